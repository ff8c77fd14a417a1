with latest as (

    -- rows deleted in the source (pgp_is_deleted) are left out
    select *
    from {{ ref('gitlab_dotcom_merge_requests_dedupe_source') }}
    where not pgp_is_deleted

)

select
    id as merge_request_id,
    iid,
    target_branch,
    source_branch,
    source_project_id,
    author_id,
    assignee_id,
    title,
    created_at,
    updated_at,
    milestone_id,
    state_id,
    merge_status,
    target_project_id,
    updated_by_id,
    merge_error,
    merge_params,
    merge_when_pipeline_succeeds,
    merge_user_id,
    approvals_before_merge,
    lock_version,
    time_estimate,
    squash,
    last_edited_at,
    last_edited_by_id,
    head_pipeline_id,
    discussion_locked,
    latest_merge_request_diff_id,
    allow_maintainer_to_push,
    description,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
