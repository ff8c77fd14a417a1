with history as (

    {{ scd_type_2(
        source('gitlab_dotcom', 'namespace_statistics'),
        unique_key='id',
        columns=[
            'namespace_id',
            'shared_runners_seconds',
            'shared_runners_seconds_last_reset',
            'storage_size',
            'dependency_proxy_size'
        ]
    ) }}

)

select
    id as namespace_statistics_id,
    namespace_id,
    shared_runners_seconds,
    shared_runners_seconds_last_reset,
    storage_size,
    dependency_proxy_size,
    valid_from,
    valid_to,
    is_current
from history
