"""``twist kongish``: run a kongish node."""
import atexit
import os
import sys

from twisted.application.service import IServiceMaker
from twisted.logger import LogLevel
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

#: Kong's log levels as Twisted's; Kong's ``notice`` is Twisted's ``info``.
LOG_LEVELS = {
    "debug": LogLevel.debug, "info": LogLevel.info, "notice": LogLevel.info,
    "warn": LogLevel.warn, "error": LogLevel.error,
    "crit": LogLevel.critical, "alert": LogLevel.critical, "emerg": LogLevel.critical,
}


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "kong.conf-style configuration file."],
        ["proxy-listen", None, None, "Override proxy_listen (Kong 'host:port' or a Twisted endpoint)."],
        ["admin-listen", None, None, "Override admin_listen (Kong 'host:port' or a Twisted endpoint)."],
        ["nginx-worker-processes", None, None, "Override nginx_worker_processes ('auto' or a number)."],
    ]


@implementer(IServiceMaker, IPlugin)
class KongishServiceMaker:
    tapname = "kongish"
    description = "A Kong-compatible API gateway with Lua serverless functions."
    options = Options

    def makeService(self, options):
        from kongish.service import KongishService
        from kongish.settings import Settings
        from kongish.workers.master import MasterService

        overrides = {"proxy_listen": options["proxy-listen"], "admin_listen": options["admin-listen"],
                     "nginx_worker_processes": options["nginx-worker-processes"]}
        settings = Settings.load(options["config"], overrides=overrides)
        twist = getattr(options, "parent", None)
        level = LOG_LEVELS[settings.log_level]
        if twist is not None and twist.get("logLevel") == getattr(twist, "defaultLogLevel", None):
            # log_level applies unless twist's own --log-level chose another level.
            twist["logLevel"] = level
        elif twist is not None and twist.get("logLevel") is not None:
            level = twist["logLevel"]
        service: KongishService
        if settings.worker_processes > 1:  # a master, whose workers serve the proxy
            def reload_settings():
                return Settings.load(options["config"], overrides=overrides)

            service = MasterService(settings, owns_process=True, log_level=level.name,
                                    reload_settings=reload_settings)
        else:
            service = KongishService(settings, owns_process=True)
        atexit.register(_exit_if_start_failed, service)
        return service


def _exit_if_start_failed(service) -> None:
    """A start that failed ends the process with status 1, as ``kong start`` does.

    ``twist`` itself always exits 0 once its reactor stops; this runs after that, when
    the logs are written, so only the exit status changes.
    """
    if service.start_failure is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


serviceMaker = KongishServiceMaker()
