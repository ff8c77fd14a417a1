with history as (

    {{ scd_type_2(
        source('gitlab_dotcom', 'label_links'),
        unique_key='id',
        columns=[
            'label_id',
            'target_id',
            'target_type',
            'created_at',
            'updated_at'
        ]
    ) }}

)

select
    id as label_link_id,
    label_id,
    target_id,
    target_type,
    created_at,
    updated_at,
    valid_from,
    valid_to,
    is_current
from history
