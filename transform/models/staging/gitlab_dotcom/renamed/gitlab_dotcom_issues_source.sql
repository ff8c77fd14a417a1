with latest as (

    -- rows deleted in the source (pgp_is_deleted) are left out
    select *
    from {{ ref('gitlab_dotcom_issues_dedupe_source') }}
    where not pgp_is_deleted

)

select
    id as issue_id,
    iid,
    title,
    author_id,
    project_id,
    created_at,
    updated_at,
    confidential,
    description,
    milestone_id,
    updated_by_id,
    weight,
    due_date,
    moved_to_id,
    lock_version,
    time_estimate,
    cast(total_time_spent as {{ dbt.type_numeric() }}) as total_time_spent,
    last_edited_at,
    last_edited_by_id,
    discussion_locked,
    closed_at,
    closed_by_id,
    relative_position,
    service_desk_reply_to,
    state_id,
    duplicated_to_id,
    health_status,
    work_item_type_id,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
