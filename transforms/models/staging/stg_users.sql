-- One row per valid user.
{{ passed_rows('stg_users_checked') }}
