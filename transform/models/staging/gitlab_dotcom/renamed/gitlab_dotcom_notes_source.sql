with latest as (

    -- rows deleted in the source (pgp_is_deleted) are left out
    select *
    from {{ ref('gitlab_dotcom_notes_dedupe_source') }}
    where not pgp_is_deleted

)

select
    id as note_id,
    note,
    noteable_type,
    author_id,
    created_at,
    updated_at,
    project_id,
    attachment,
    line_code,
    commit_id,
    noteable_id,
    system,
    st_diff,
    updated_by_id,
    type,
    position,
    original_position,
    resolved_at,
    resolved_by_id,
    discussion_id,
    note_html,
    cached_markdown_version,
    change_position,
    resolved_by_push,
    {{ epoch_to_timestamp('_uploaded_at') }} as uploaded_at
from latest
