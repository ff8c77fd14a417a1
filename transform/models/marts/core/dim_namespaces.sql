-- One row per namespace (group or personal), latest state, with its storage statistics and
-- whether it belongs to GitLab itself (seed internal_gitlab_namespaces, the tap's allow list).
with namespaces as (

    select * from {{ ref('gitlab_dotcom_namespaces_source') }}

), internal_names as (

    select * from {{ ref('gitlab_dotcom_namespaces_internal_only_source') }}

), statistics as (

    select * from {{ ref('gitlab_dotcom_namespace_statistics_source') }}

), internal_namespaces as (

    select namespace_id from {{ ref('internal_gitlab_namespaces') }}

)

select
    namespaces.namespace_id,
    coalesce(internal_names.name, namespaces.name) as namespace_name,
    internal_names.path as namespace_path,
    namespaces.type as namespace_type,
    namespaces.parent_id as parent_namespace_id,
    namespaces.ultimate_parent_namespace_id,
    namespaces.namespace_depth,
    namespaces.owner_id,
    namespaces.visibility_level,
    case namespaces.visibility_level
        when 0 then 'private'
        when 10 then 'internal'
        when 20 then 'public'
    end as visibility,
    (
        internal_self.namespace_id is not null
        or internal_top.namespace_id is not null
    ) as is_internal_namespace,
    statistics.storage_size,
    statistics.shared_runners_seconds,
    statistics.dependency_proxy_size,
    namespaces.created_at,
    namespaces.updated_at
from namespaces
left join internal_names
    on namespaces.namespace_id = internal_names.namespace_id
left join statistics
    on namespaces.namespace_id = statistics.namespace_id
left join internal_namespaces as internal_self
    on namespaces.namespace_id = internal_self.namespace_id
left join internal_namespaces as internal_top
    on namespaces.ultimate_parent_namespace_id = internal_top.namespace_id
