-- Data Pump: marketing contacts (pumps.yml: timestamp_column last_changed, sensitive).
-- One row per user with an email address. PII (email, names): pumps_sensitive only.
-- last_changed is the latest change seen on the user or on any of their memberships (also a
-- membership that ended), so the pump's daily window picks up every contact that changed.
with users as (

    select * from {{ ref('gitlab_dotcom_users_source') }}

), memberships as (

    select * from {{ ref('gitlab_dotcom_members_source') }}
    where user_id is not null

), membership_history as (

    select * from {{ ref('gitlab_dotcom_members_history') }}
    where user_id is not null

), internal_namespaces as (

    select namespace_id from {{ ref('internal_gitlab_namespaces') }}

), internal_projects as (

    select project_id from {{ ref('internal_gitlab_projects') }}

), membership_summary as (

    select
        memberships.user_id,
        count(
            distinct case when memberships.source_type = 'Namespace' then memberships.source_id end
        ) as group_membership_count,
        count(
            distinct case when memberships.source_type = 'Project' then memberships.source_id end
        ) as project_membership_count,
        max(memberships.access_level) as highest_access_level,
        {{ dbt.bool_or(
            "memberships.source_type = 'Namespace' and memberships.access_level >= 50"
        ) }} as is_group_namespace_owner,
        {{ dbt.bool_or(
            "internal_namespaces.namespace_id is not null"
            ~ " or internal_projects.project_id is not null"
        ) }} as is_member_of_internal_namespace
    from memberships
    left join internal_namespaces
        on memberships.source_type = 'Namespace'
            and memberships.source_id = internal_namespaces.namespace_id
    left join internal_projects
        on memberships.source_type = 'Project'
            and memberships.source_id = internal_projects.project_id
    group by memberships.user_id

), membership_changes as (

    select
        user_id,
        max({{ greatest_ignore_nulls(['valid_from', 'valid_to']) }}) as last_membership_change_at
    from membership_history
    group by user_id

), names as (

    select
        user_id,
        name,
        {{ dbt.position("' '", "name") }} as first_space
    from users

)

select
    users.user_id,
    users.email as email_address,
    case
        when names.first_space > 0 then substr(users.name, 1, names.first_space - 1)
        else users.name
    end as first_name,
    case
        when names.first_space > 0 then substr(users.name, names.first_space + 1)
    end as last_name,
    users.name as full_name,
    users.username as gitlab_user_name,
    users.state as user_state,
    users.user_type,
    users.admin as is_admin,
    users.external as is_external_user,
    users.preferred_language,
    users.preferred_dashboard,
    users.created_at,
    users.confirmed_at,
    users.last_sign_in_at,
    users.last_activity_on,
    coalesce(membership_summary.group_membership_count, 0) as group_membership_count,
    coalesce(membership_summary.project_membership_count, 0) as project_membership_count,
    membership_summary.highest_access_level,
    coalesce(membership_summary.is_group_namespace_owner, false) as is_group_namespace_owner,
    coalesce(membership_summary.is_member_of_internal_namespace, false)
        as is_member_of_internal_namespace,
    {{ greatest_ignore_nulls([
        'users.updated_at', 'membership_changes.last_membership_change_at'
    ]) }} as last_changed
from users
inner join names
    on users.user_id = names.user_id
left join membership_summary
    on users.user_id = membership_summary.user_id
left join membership_changes
    on users.user_id = membership_changes.user_id
where users.email is not null
    and users.email <> ''
