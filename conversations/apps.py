from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConversationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"

    def ready(self) -> None:
        from config import lookups

        from .roles import roles_after_migrate
        from .store import remembered

        remembered.watch_changes()  # this process's own changes to what the API remembers
        lookups.register()  # numbers from outside in `__in` and `__year` filters (config/lookups.py)

        # After every migrate (and every test database flush), so that a model added by a later migration
        # gets its permissions in the roles as soon as its table exists.
        post_migrate.connect(roles_after_migrate, sender=self, dispatch_uid="switchboard-roles")
