"""Every task of the project has its own queue and is bounded in time: a new task without a
route or limits fails here before it can hold a shared worker."""

from django.conf import settings

from nexus.celery import app


def _project_tasks():
    app.loader.import_default_modules()
    # Everything registered but Celery's own built-in tasks: a task of a new app is walked too.
    tasks = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert {"jobs.run_job", "webhooks.deliver", "etl.execute_run", "jobs.sweep"} <= set(tasks)
    return tasks


def test_every_task_has_a_soft_and_a_hard_time_limit_and_the_soft_one_comes_first():
    for name, task in _project_tasks().items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert soft and hard, f"{name} has no time limit"
        assert soft < hard, f"{name}: soft limit {soft} s is not below the hard limit {hard} s"


def test_every_task_is_routed_to_one_of_the_queues():
    queues = settings.CELERY_QUEUES_BY_KIND
    for name in _project_tasks():
        route = settings.CELERY_TASK_ROUTES.get(name)
        assert route is not None, f"{name} has no queue in CELERY_TASK_ROUTES"
        assert route["queue"] in queues.values()
    assert settings.CELERY_TASK_ROUTES["jobs.run_job"]["queue"] == queues["jobs"]
    assert settings.CELERY_TASK_ROUTES["webhooks.deliver"]["queue"] == queues["webhooks"]
    assert settings.CELERY_TASK_ROUTES["etl.execute_run"]["queue"] == queues["etl"]
    assert settings.CELERY_TASK_ROUTES["audits.run_batch"]["queue"] == queues["audits"]
    for periodic in settings.CELERY_BEAT_SCHEDULE.values():
        assert settings.CELERY_TASK_ROUTES[periodic["task"]]["queue"] == queues["periodic"]


def test_an_etl_slice_ends_well_before_its_task_is_stopped():
    task = app.tasks["etl.execute_run"]
    assert settings.ETL_SLICE_SECONDS < task.soft_time_limit < task.time_limit


def test_a_message_is_sent_to_the_queue_of_its_kind():
    router = app.amqp.router
    for name, kind in [
        ("jobs.run_job", "jobs"),
        ("etl.execute_run", "etl"),
        ("audits.run_batch", "audits"),
        ("jobs.sweep", "periodic"),
    ]:
        assert router.route({}, name)["queue"].name == settings.CELERY_QUEUES_BY_KIND[kind]
