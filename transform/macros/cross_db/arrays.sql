{#-
  Postgres array columns (e.g. namespaces.traversal_ids) are native arrays in the Postgres
  warehouse and ARRAY/VARIANT values in Snowflake (target-snowflake loads JSON arrays as
  VARIANT). Positions are 1-based here, as in SQL arrays; Snowflake's are 0-based.
-#}
{% macro array_element(array_expression, position, data_type) -%}
    {{ return(adapter.dispatch('array_element')(array_expression, position, data_type)) }}
{%- endmacro %}

{% macro default__array_element(array_expression, position, data_type) -%}
    cast(({{ array_expression }})[{{ position }}] as {{ data_type }})
{%- endmacro %}

{% macro snowflake__array_element(array_expression, position, data_type) -%}
    cast(get({{ array_expression }}, {{ position }} - 1) as {{ data_type }})
{%- endmacro %}


{% macro array_length(array_expression) -%}
    {{ return(adapter.dispatch('array_length')(array_expression)) }}
{%- endmacro %}

{% macro default__array_length(array_expression) -%}
    cardinality({{ array_expression }})
{%- endmacro %}

{% macro snowflake__array_length(array_expression) -%}
    array_size({{ array_expression }})
{%- endmacro %}
