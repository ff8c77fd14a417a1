-- Data Pump: daily activity per project (pumps.yml: timestamp_column report_date, not
-- sensitive: ids and counts only). One row per project and day with any activity, counted on
-- the latest state of issues, merge requests, notes and CI jobs.
with projects as (

    select * from {{ ref('dim_projects') }}

), events as (

    select
        project_id,
        cast(created_at as date) as report_date,
        1 as issues_created, 0 as issues_closed, 0 as merge_requests_created,
        0 as notes_created, 0 as ci_builds_created, 0 as ci_builds_failed
    from {{ ref('gitlab_dotcom_issues_source') }}

    union all

    select
        project_id,
        cast(closed_at as date),
        0, 1, 0, 0, 0, 0
    from {{ ref('gitlab_dotcom_issues_source') }}
    where closed_at is not null

    union all

    select
        target_project_id,
        cast(created_at as date),
        0, 0, 1, 0, 0, 0
    from {{ ref('gitlab_dotcom_merge_requests_source') }}

    union all

    select
        project_id,
        cast(created_at as date),
        0, 0, 0, 1, 0, 0
    from {{ ref('gitlab_dotcom_notes_source') }}

    union all

    select
        project_id,
        cast(created_at as date),
        0, 0, 0, 0, 1,
        case when status = 'failed' then 1 else 0 end
    from {{ ref('gitlab_dotcom_ci_builds_source') }}

), daily as (

    select
        project_id,
        report_date,
        sum(issues_created) as issues_created,
        sum(issues_closed) as issues_closed,
        sum(merge_requests_created) as merge_requests_created,
        sum(notes_created) as notes_created,
        sum(ci_builds_created) as ci_builds_created,
        sum(ci_builds_failed) as ci_builds_failed
    from events
    where project_id is not null
        and report_date is not null
    group by project_id, report_date

)

select
    daily.report_date,
    daily.project_id,
    projects.namespace_id,
    projects.ultimate_parent_namespace_id,
    projects.visibility,
    coalesce(projects.is_internal_project, false) as is_internal_project,
    daily.issues_created,
    daily.issues_closed,
    daily.merge_requests_created,
    daily.notes_created,
    daily.ci_builds_created,
    daily.ci_builds_failed
from daily
left join projects
    on projects.project_id = daily.project_id
