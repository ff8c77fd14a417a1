with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'merge_request_diffs'), 'id') }}

)

select
    id as merge_request_diff_id,
    state,
    merge_request_id,
    created_at,
    updated_at,
    base_commit_sha,
    real_size,
    head_commit_sha,
    start_commit_sha,
    commits_count,
    external_diff,
    external_diff_store,
    stored_externally,
    files_count,
    sorted,
    diff_type,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
