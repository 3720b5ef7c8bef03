from django.core.management.base import BaseCommand, CommandError

from etl.mock_api import MockApi


class Command(BaseCommand):
    help = "Serve a local paginated JSON API (API-key auth, occasional 429s) for the API connector."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--api-key", default="dev-key")
        parser.add_argument("--items", type=int, default=250)
        parser.add_argument("--rate-429", type=float, default=0.1, help="Share of requests answered 429.")
        parser.add_argument(
            "--rename", action="append", default=[], help="old:new, to simulate schema drift."
        )

    def handle(self, *args, port, host, api_key, items, rate_429, rename, **options):
        renames = {}
        for pair in rename:
            old, _, new = pair.partition(":")
            if not old or not new:
                raise CommandError(f"--rename takes old:new, got {pair!r}")
            renames[old] = new
        api = MockApi(host=host, port=port, api_key=api_key, items=items, rate_429=rate_429, renames=renames)
        self.stdout.write(f"Serving {items} items at {api.url} (X-API-Key: {api_key}); Ctrl-C to stop.")
        try:
            api.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            api.server.server_close()
