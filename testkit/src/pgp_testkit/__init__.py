"""The project's test kit: one pytest plugin (``pgp_testkit.plugin``) and what tests share.

Services (stdlib only, also run by scripts/ with the system python3):
``daemon`` (the base of a local server), ``localpg`` (throwaway Postgres), ``locals3`` (moto S3).
Test helpers: ``session`` (the session's Postgres and S3), ``dsn``, ``reference`` (GitLab's
manifests), ``tap`` (running the tap), ``s3pump`` (target-s3-pump), ``pipeline`` (Meltano
end to end), ``dbt``, ``snowflake_emulator``, ``exact_values``, ``gitlab_schema``.

Importing the package imports nothing else: other venvs' Pythons run some of these modules.
"""
