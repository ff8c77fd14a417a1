with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'projects_internal_only'), 'id') }}

)

select
    id as project_id,
    name,
    path,
    description,
    created_at,
    updated_at,
    namespace_id,
    import_url,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
