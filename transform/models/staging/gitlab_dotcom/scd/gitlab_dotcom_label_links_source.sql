with latest as (

    {{ scd_latest_state(source('gitlab_dotcom', 'label_links')) }}

)

select
    id as label_link_id,
    label_id,
    target_id,
    target_type,
    created_at,
    updated_at,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
