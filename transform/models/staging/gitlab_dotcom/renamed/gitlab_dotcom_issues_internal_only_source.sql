with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'issues_internal_only'), 'id') }}

)

select
    id as issue_id,
    iid,
    title,
    description,
    project_id,
    service_desk_reply_to,
    updated_at,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
