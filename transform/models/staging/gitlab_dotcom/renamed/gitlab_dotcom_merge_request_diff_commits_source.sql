with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'merge_request_diff_commits'),
        ['merge_request_diff_id', 'relative_order'], updated_at=none) }}

)

select
    merge_request_diff_id,
    relative_order,
    authored_date,
    committed_date,
    sha,
    commit_author_id,
    committer_id,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
