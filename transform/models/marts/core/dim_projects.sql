-- One row per project, latest state, with its namespace and whether it is GitLab's own
-- (seed internal_gitlab_projects, or a project in an internal namespace).
with projects as (

    select * from {{ ref('gitlab_dotcom_projects_source') }}

), internal_details as (

    select * from {{ ref('gitlab_dotcom_projects_internal_only_source') }}

), namespaces as (

    select * from {{ ref('dim_namespaces') }}

), internal_projects as (

    select project_id from {{ ref('internal_gitlab_projects') }}

)

select
    projects.project_id,
    internal_details.name as project_name,
    internal_details.path as project_path,
    projects.namespace_id,
    namespaces.ultimate_parent_namespace_id,
    projects.creator_id,
    projects.visibility_level,
    case projects.visibility_level
        when 0 then 'private'
        when 10 then 'internal'
        when 20 then 'public'
    end as visibility,
    projects.archived as is_archived,
    projects.mirror as is_mirror,
    projects.star_count,
    (
        internal_projects.project_id is not null
        or coalesce(namespaces.is_internal_namespace, false)
    ) as is_internal_project,
    projects.created_at,
    projects.updated_at,
    projects.last_activity_at
from projects
left join internal_details
    on projects.project_id = internal_details.project_id
left join namespaces
    on projects.namespace_id = namespaces.namespace_id
left join internal_projects
    on projects.project_id = internal_projects.project_id
