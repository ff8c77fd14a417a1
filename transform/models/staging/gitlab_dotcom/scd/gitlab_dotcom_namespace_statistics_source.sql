with latest as (

    {{ scd_latest_state(source('gitlab_dotcom', 'namespace_statistics')) }}

)

select
    id as namespace_statistics_id,
    namespace_id,
    shared_runners_seconds,
    shared_runners_seconds_last_reset,
    cast(storage_size as {{ dbt.type_numeric() }}) as storage_size,
    dependency_proxy_size,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
