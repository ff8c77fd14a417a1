{#-
  GREATEST over expressions that may be NULL, ignoring the NULLs (NULL only if all are).
  Postgres' GREATEST already ignores NULLs; Snowflake's returns NULL as soon as one argument
  is NULL, so each argument falls back to the others there.
-#}
{% macro greatest_ignore_nulls(expressions) -%}
    {{ return(adapter.dispatch('greatest_ignore_nulls')(expressions)) }}
{%- endmacro %}

{% macro default__greatest_ignore_nulls(expressions) -%}
    greatest({{ expressions | join(', ') }})
{%- endmacro %}

{% macro snowflake__greatest_ignore_nulls(expressions) -%}
    greatest(
    {%- for expression in expressions %}
        coalesce({{ expression }}
        {%- for other in expressions if other != expression %}, {{ other }}{% endfor %})
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
    )
{%- endmacro %}
