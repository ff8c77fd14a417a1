with latest as (

    {{ pgp_incremental_latest(source('gitlab_dotcom', 'labels_internal_only'), 'id') }}

)

select
    id as label_id,
    title,
    project_id,
    group_id,
    updated_at,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
