-- Data Pump: daily activity per project (pumps.yml: timestamp_column report_date, not
-- sensitive: ids and counts only). One row per project and day with any activity, counted on
-- the latest state of issues, merge requests, notes and CI jobs.
with projects as (

    select * from {{ ref('dim_projects') }}

), events as (

    -- one row per counted event: the project, the day and what happened
    select
        project_id,
        cast(created_at as date) as report_date,
        'issue_created' as event_type
    from {{ ref('gitlab_dotcom_issues_source') }}

    union all

    select
        project_id,
        cast(closed_at as date) as report_date,
        'issue_closed' as event_type
    from {{ ref('gitlab_dotcom_issues_source') }}
    where closed_at is not null

    union all

    select
        target_project_id as project_id,
        cast(created_at as date) as report_date,
        'merge_request_created' as event_type
    from {{ ref('gitlab_dotcom_merge_requests_source') }}

    union all

    select
        project_id,
        cast(created_at as date) as report_date,
        'note_created' as event_type
    from {{ ref('gitlab_dotcom_notes_source') }}

    union all

    select
        project_id,
        cast(created_at as date) as report_date,
        'ci_build_created' as event_type
    from {{ ref('gitlab_dotcom_ci_builds_source') }}

    union all

    -- a failed job counts on the day it was created, like its ci_build_created
    select
        project_id,
        cast(created_at as date) as report_date,
        'ci_build_failed' as event_type
    from {{ ref('gitlab_dotcom_ci_builds_source') }}
    where status = 'failed'

), daily as (

    select
        project_id,
        report_date,
        sum(case when event_type = 'issue_created' then 1 else 0 end) as issues_created,
        sum(case when event_type = 'issue_closed' then 1 else 0 end) as issues_closed,
        sum(case when event_type = 'merge_request_created' then 1 else 0 end)
            as merge_requests_created,
        sum(case when event_type = 'note_created' then 1 else 0 end) as notes_created,
        sum(case when event_type = 'ci_build_created' then 1 else 0 end) as ci_builds_created,
        sum(case when event_type = 'ci_build_failed' then 1 else 0 end) as ci_builds_failed
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
    on daily.project_id = projects.project_id
