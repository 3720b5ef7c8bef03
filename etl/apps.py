from django.apps import AppConfig


class EtlConfig(AppConfig):
    name = "etl"
    verbose_name = "Data sources (ETL)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Records can be sent to the AI jobs (`record_id` instead of `text`). The ETL uses
        # jobs through its services; jobs never imports the ETL, so the ETL says here how a
        # record becomes a job's text.
        from etl.selectors import record_text
        from jobs.services import job_text_source_register

        job_text_source_register(
            name="record_id", resolver=lambda record_id: record_text(record_id=record_id)
        )
