"""The composition root: site configuration → drivers → a TaskGroup of named tasks.

The only module that imports every part. Start-up order is the order of trust: the ledger must pass
its integrity check, the configuration its cross-checks (including the fail-safe budget), and the
OCPP listener must be installing safe profiles before systemd hears READY. Shutdown pushes every
connected charger to its safe current and commits the ledger before the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import structlog

from controller.api import register_methods
from controller.authorization import AuthListStore, SiteAuthorizer
from controller.commands import SiteCommandHandler
from controller.dispatch import ChargerLimits, DispatchConfig, Dispatcher
from controller.localapi.server import ControlServer, MethodRegistry
from controller.loop import ControlLoop
from controller.modbus_site import ModbusSite, build_modbus_site
from controller.ocpp_site import charge_points
from controller.pacing import Pacer, PacingConfig
from controller.reporting import CycleReporter
from controller.sdnotify import SystemdNotifier, run_watchdog
from controller.sessions import Ledger, OcppTransactionIds, SessionRecorder
from controller.sessions.intake import SessionIntake
from controller.settings import SiteSettings
from controller.site.snapshot import SiteState
from controller.uplink import Uplink, UplinkConfig
from drivers.contracts import ChargerEvent, Clock, CurrentLimiter, MeterReading
from drivers.han import HanReader
from drivers.ocpp import CentralSystem, ChargerHandle, CsmsConfig, LocalAuthList
from drivers.ocpp.config import SecurityProfile

log = structlog.get_logger("app")

# A charger with a car that has said nothing for this many MeterValues intervals counts as silent.
SILENT_INTERVALS = 3


class ReloadUnsupported(Exception):
    """The daemon has no configuration file to read again."""


async def _first_set(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait(), name="app-wait-event") for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


class StartupError(Exception):
    """The daemon must not start (and must not report READY); the message says why."""


@dataclass(frozen=True, slots=True)
class Tuning:
    """Timing the configuration does not expose; tests and the simulator shorten them."""

    tick_s: float = 2.0
    command_timeout_s: float = 10.0
    shutdown_timeout_s: float = 10.0


async def serve(
    settings: SiteSettings,
    clock: Clock,
    stop: asyncio.Event,
    *,
    load: Callable[[], SiteSettings] | None = None,
    notifier: SystemdNotifier | None = None,
    tuning: Tuning | None = None,
    started: Callable[[Daemon], None] | None = None,
) -> None:
    """Run the daemon until `stop` is set; a reload it accepted starts it again on the new settings.

    `started` sees each daemon before it runs (the signal handlers and tests need the current one).
    """
    while True:
        daemon = Daemon(settings, clock, notifier=notifier, tuning=tuning, reload=load)
        if started is not None:
            started(daemon)
        await daemon.run(stop)
        if stop.is_set() or daemon.reloaded is None:
            return
        settings = daemon.reloaded
        log.info("app.restarting", reason="reload", chargers=len(settings.chargers))


class Daemon:
    def __init__(
        self,
        settings: SiteSettings,
        clock: Clock,
        *,
        notifier: SystemdNotifier | None = None,
        tuning: Tuning | None = None,
        reload: Callable[[], SiteSettings] | None = None,
    ) -> None:
        """`reload` reads the configuration again (raising ConfigError when it is invalid); without it
        the daemon refuses to reload."""
        self.settings = settings
        self._load = reload
        # The configuration a reload accepted: run() returns so that the caller starts it.
        self.reloaded: SiteSettings | None = None
        self._restart = asyncio.Event()
        self.clock = clock
        self.notifier = notifier or SystemdNotifier({})
        self.tuning = tuning or Tuning()
        self.csms: CentralSystem | None = None
        self.han: HanReader | None = None
        self.loop: ControlLoop | None = None
        self.dispatcher: Dispatcher | None = None
        self.ledger: Ledger | None = None
        self.recorder: SessionRecorder | None = None
        self.intake: SessionIntake | None = None
        self.uplink: Uplink | None = None
        self.site: SiteState | None = None
        self.modbus: ModbusSite | None = None
        self.ready = asyncio.Event()

    # ----------------------------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        zone = ZoneInfo(settings.site.timezone)
        async with contextlib.AsyncExitStack() as stack:
            ledger = await stack.enter_async_context(await Ledger.open(settings.storage.path))
            self.ledger = ledger
            auth_list = LocalAuthList()
            auth_store = AuthListStore(ledger)
            await auth_store.load_into(auth_list)
            authorizer = SiteAuthorizer(auth_list, accept_unknown=settings.authorization.accept_unknown_tags)
            self.recorder = SessionRecorder(ledger, self.clock, zone=zone)
            intake = SessionIntake(self.recorder)
            self.intake = intake

            site = SiteState(settings, charger_silent_after_s=SILENT_INTERVALS * 10.0)
            self.site = site
            csms = self._central_system(authorizer, OcppTransactionIds(ledger))
            handles: dict[str, ChargerHandle] = {}
            if csms is not None:
                handles = {cid: csms.charger(cid) for cid in csms.charger_ids()}
                await self._resume_transactions(ledger, csms)
            modbus = build_modbus_site(
                settings, self.clock, sink=self._charger_sink, record=self._record_charger_event
            )
            self.modbus = modbus
            await self._resume_modbus_sessions(ledger, modbus)
            limiters: dict[str, CurrentLimiter] = {**handles, **modbus.chargers}
            policy = settings.policy
            dispatcher = Dispatcher(
                limiters,
                self.clock,
                DispatchConfig(lease_s=policy.lease_s, command_timeout_s=self.tuning.command_timeout_s),
                limits={c.id: ChargerLimits(c.safe_current_a, c.max_a) for c in settings.chargers},
            )
            self.dispatcher = dispatcher
            loop = ControlLoop(
                site,
                dispatcher,
                self.clock,
                pacer=Pacer(PacingConfig(settle_s=policy.settle_s)),
                tick_s=self.tuning.tick_s,
            )
            self.loop = loop
            dispatcher.on_change = loop.poke

            uplink = None
            if settings.mqtt is not None:
                handler = SiteCommandHandler(
                    site=site,
                    auth_list=auth_list,
                    auth_store=auth_store,
                    remote=handles,
                    availability=handles,
                    recompute=loop.poke,
                )
                uplink = Uplink(self._uplink_config(), ledger, self.clock, command_handler=handler)
            root = next(f.id for f in settings.fuses if f.parent is None)
            reporter = CycleReporter(
                site,
                root_fuse=root,
                safety_margin_a=policy.safety_margin_a,
                on_site=None if uplink is None else uplink.telemetry.update_site,
                on_charger=None if uplink is None else uplink.telemetry.update_charger,
                on_event=None if uplink is None else uplink.events.emit,
            )
            loop.add_observer(reporter)

            # The intake runs until the network services are closed - a charger's transaction
            # message waits for its commit until then - and what is left is drained into the ledger
            # after them: nothing can arrive after the drain.
            stack.push_async_callback(intake.drain)
            writer = asyncio.create_task(intake.run(), name="sessions")
            stack.push_async_callback(_cancel, writer)
            services = await stack.enter_async_context(contextlib.AsyncExitStack())
            if csms is not None:
                self.csms = await services.enter_async_context(csms)
            if uplink is not None:
                self.uplink = await services.enter_async_context(uplink)
            registry = MethodRegistry()
            register_methods(registry, self)
            await services.enter_async_context(
                ControlServer(settings.control.socket_path, registry, group=settings.control.socket_group)
            )
            if settings.meter is not None:
                self.han = HanReader(
                    settings.meter.port,
                    vendor=settings.meter.vendor,
                    ct_ratio=settings.meter.ct_ratio,
                    clock=self.clock,
                    sink=self._meter_sink,
                    silence_after_s=policy.meter_stale_intervals * settings.meter.full_list_interval_s,
                )
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(loop.run(), name="control-loop")
                    tasks.create_task(dispatcher.run(), name="dispatcher")
                    if self.han is not None:
                        tasks.create_task(self.han.run(), name="han-reader")
                    for key, bus in modbus.buses.items():
                        tasks.create_task(bus.run(), name=f"modbus-bus:{key}")
                    for charger_id, driver in modbus.chargers.items():
                        tasks.create_task(driver.run(), name=f"modbus:{charger_id}")
                    tasks.create_task(run_watchdog(self.notifier, self._healthy), name="watchdog")
                    loop.cycle("start")
                    self.notifier.ready(f"{len(settings.chargers)} chargers configured")
                    self.ready.set()
                    log.info(
                        "app.ready",
                        site=settings.site.id,
                        chargers=len(settings.chargers),
                        ocpp_port=None if self.csms is None else self.csms.port,
                        meter=None if settings.meter is None else settings.meter.port,
                    )
                    await _first_set(stop, self._restart)
                    if stop.is_set() or self.reloaded is None:
                        self.notifier.stopping("pushing safe limits")
                    else:
                        self.notifier.reloading("reloading the configuration")
                    await self._push_safe_limits()
                    raise _Stop
            except* _Stop:
                pass
            await services.aclose()
        log.info("app.stopped")

    def request_reload(self) -> SiteSettings:
        """Read the configuration again; when it is valid, stop so that the caller starts it.

        An invalid configuration raises ConfigError and changes nothing: the daemon keeps running
        on the one it has. A reload is a restart in the same process - safe limits pushed, ledger
        committed, chargers reconnecting - which is what commissioning (adopting a charger,
        changing a fuse) needs, and the only way every part sees the same configuration.
        """
        if self._load is None:
            raise ReloadUnsupported("this daemon was started without a configuration file to reload")
        settings = self._load()
        self.reloaded = settings
        self._restart.set()
        log.info("app.reload_accepted", chargers=len(settings.chargers), fuses=len(settings.fuses))
        return settings

    # ------------------------------------------------------------------------------------ wiring

    def _central_system(
        self, authorizer: SiteAuthorizer, transaction_ids: OcppTransactionIds
    ) -> CentralSystem | None:
        settings = self.settings
        if settings.ocpp is None:
            return None
        ocpp = settings.ocpp
        config = CsmsConfig(
            host=ocpp.host,
            port=ocpp.port,
            security_profile=SecurityProfile(ocpp.security_profile),
            adoption=ocpp.adoption,
            tls_cert_file=None if ocpp.cert_file is None else str(ocpp.cert_file),
            tls_key_file=None if ocpp.key_file is None else str(ocpp.key_file),
            tls_ca_file=None if ocpp.ca_file is None else str(ocpp.ca_file),
            default_subprotocol=ocpp.default_subprotocol,
            lease_s=settings.policy.lease_s,
            heartbeat_interval_s=ocpp.heartbeat_interval_s,
            call_timeout_s=self.tuning.command_timeout_s,
        )
        return CentralSystem(
            config,
            charge_points(settings),
            clock=self.clock,
            sink=self._charger_sink,
            authorizer=authorizer,
            transaction_ids=transaction_ids,
            record=self._record_charger_event,
        )

    async def _resume_transactions(self, ledger: Ledger, csms: CentralSystem) -> None:
        """Sessions open in the ledger stay open across a restart: their chargers know them again
        and are asked about them when they reconnect (DESIGN §6)."""
        known = set(csms.charger_ids())
        modbus = {c.id for c in self.settings.chargers if c.protocol == "modbus"}
        for session in await ledger.open_sessions():
            if session.charger_id in modbus:
                continue  # _resume_modbus_sessions
            if session.charger_id not in known:
                log.warning("app.open_session_without_charger", charger=session.charger_id)
                continue
            csms.resume_transaction(
                session.charger_id, session.transaction_id, session.id_tag, session.meter_start_wh
            )
            log.info("app.session_resumed", charger=session.charger_id, session_id=str(session.session_id))

    @staticmethod
    async def _resume_modbus_sessions(ledger: Ledger, modbus: ModbusSite) -> None:
        """A Modbus charger's open session goes on, or ends at its first poll if the car left."""
        for session in await ledger.open_sessions():
            driver = modbus.chargers.get(session.charger_id)
            if driver is not None:
                driver.transactions.resume(session.transaction_id, session.id_tag, session.meter_start_wh)
                log.info(
                    "app.session_resumed", charger=session.charger_id, session_id=str(session.session_id)
                )

    def _uplink_config(self) -> UplinkConfig:
        settings = self.settings
        mqtt = settings.mqtt
        assert mqtt is not None
        return UplinkConfig(
            url=mqtt.url,
            site_id=settings.site.id,
            client_id=mqtt.client_id or f"sitectl-{settings.site.id}",
            prefix=mqtt.prefix,
            ca_file=mqtt.ca_file,
            cert_file=mqtt.cert_file,
            key_file=mqtt.key_file,
            fuse_ratings_a={f.id: f.limit_a for f in settings.fuses},
            charger_ids=frozenset(c.id for c in settings.chargers),
        )

    # ------------------------------------------------------------------------------------- sinks

    def _meter_sink(self, reading: MeterReading) -> None:
        if self.loop is not None:
            self.loop.meter_sink(reading)

    def _charger_sink(self, event: ChargerEvent) -> None:
        # Billing first: the intake never drops an event.
        if self.intake is not None:
            self.intake.put(event)
        if self.loop is not None:
            self.loop.charger_sink(event)

    async def _record_charger_event(self, event: ChargerEvent) -> None:
        """Returns once `event` is committed to the ledger (the driver then answers the charger)."""
        if self.loop is not None:
            self.loop.charger_sink(event)
        assert self.intake is not None
        await self.intake.record(event)

    # ------------------------------------------------------------------------------------- tasks

    async def _push_safe_limits(self) -> None:
        """SIGTERM: every connected charger to its safe current now, rather than at lease expiry."""
        targets: dict[str, CurrentLimiter] = {}
        if self.csms is not None:
            connected = set(self.csms.connected_identities())
            for charger in self.settings.chargers:
                if charger.protocol == "ocpp" and charger.identity in connected:
                    targets[charger.id] = self.csms.charger(charger.id)
        if self.modbus is not None:
            targets |= {cid: d for cid, d in self.modbus.chargers.items() if d.provisioned}

        async def push(charger_id: str, limiter: CurrentLimiter) -> None:
            current_a = self.settings.charger(charger_id).safe_current_a
            result = await limiter.set_current(
                current_a, lease_s=self.settings.policy.lease_s, timeout_s=self.tuning.command_timeout_s
            )
            log.info(
                "app.safe_limit_pushed", charger=charger_id, current_a=current_a, outcome=str(result.outcome)
            )

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.clock.loop_seconds(self.tuning.shutdown_timeout_s)):
                await asyncio.gather(*(push(c, h) for c, h in targets.items()), return_exceptions=True)

    def _healthy(self) -> bool:
        loop = self.loop
        if loop is None or loop.last is None:
            return False
        age_s = self.clock.monotonic() - loop.last.started_mono
        return age_s < 5 * self.tuning.tick_s


class _Stop(Exception):
    pass


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
