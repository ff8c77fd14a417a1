with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'labels'), 'id') }}

)

select
    id as label_id,
    title,
    color,
    project_id,
    created_at,
    updated_at,
    template,
    description,
    type,
    group_id,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
