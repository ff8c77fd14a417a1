with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'namespaces_internal_only'), 'id') }}

)

select
    id as namespace_id,
    parent_id,
    name,
    path,
    updated_at,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
