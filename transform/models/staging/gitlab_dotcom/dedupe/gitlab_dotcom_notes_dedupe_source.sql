{#- Latest row per id of RAW notes, deleted ones included and flagged (pgp_is_deleted,
    pgp_is_deleted_updated_at from the deletes pass, macros/deletes/pgp_flag_deletes.sql). -#}
{{ pgp_flag_deletes(
    source('gitlab_dotcom', 'notes'),
    source('gitlab_dotcom', 'notes_pks'),
    'id'
) }}
