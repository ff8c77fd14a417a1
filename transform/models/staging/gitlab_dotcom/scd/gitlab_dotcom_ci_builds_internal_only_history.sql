with history as (

    {{ scd_type_2(
        source('gitlab_dotcom', 'ci_builds_internal_only'),
        unique_key='id',
        columns=[
            'project_id',
            'status',
            'name',
            'ref',
            'created_at',
            'updated_at',
            'finished_at'
        ]
    ) }}

)

select
    id as ci_build_id,
    project_id,
    status,
    name,
    ref,
    created_at,
    updated_at,
    finished_at,
    valid_from,
    valid_to,
    is_current
from history
