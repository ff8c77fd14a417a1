{#-
  json/jsonb columns arrive in RAW as JSON text (as pgp loaded them). parse_json() turns the text
  into the warehouse's semi-structured type (jsonb / VARIANT); json_extract_text() reads one
  top-level key of that value as text (NULL when the key is missing).
-#}
{% macro parse_json(expression) -%}
    {{ return(adapter.dispatch('parse_json')(expression)) }}
{%- endmacro %}

{% macro default__parse_json(expression) -%}
    cast({{ expression }} as jsonb)
{%- endmacro %}

{% macro snowflake__parse_json(expression) -%}
    parse_json({{ expression }})
{%- endmacro %}


{% macro json_extract_text(json_expression, key) -%}
    {{ return(adapter.dispatch('json_extract_text')(json_expression, key)) }}
{%- endmacro %}

{% macro default__json_extract_text(json_expression, key) -%}
    ({{ json_expression }} ->> '{{ key }}')
{%- endmacro %}

{% macro snowflake__json_extract_text(json_expression, key) -%}
    cast(get({{ json_expression }}, '{{ key }}') as varchar)
{%- endmacro %}
