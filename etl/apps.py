from django.apps import AppConfig


class EtlConfig(AppConfig):
    name = "etl"
    verbose_name = "Data sources (ETL)"
    default_auto_field = "django.db.models.BigAutoField"
