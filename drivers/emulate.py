"""``battery-twin emulate modbus|can|serial``: a simulated rig served over a real protocol, for tests and for
users without hardware. Each uses the same profiles (and DBC) as the drivers.

    battery-twin emulate modbus --tcp 127.0.0.1:5020 --devices 1,2   (port 0: a free port, named in the banner)
    battery-twin emulate modbus --rtu /tmp/ttyEMU --devices 1
    battery-twin emulate can --interface slcan --channel /tmp/ttyCAN
    battery-twin emulate serial --port /tmp/ttySCPI --channels 1,2,3,4

Pty pairs for the serial transports: ``socat pty,raw,echo=0,link=/tmp/ttyEMU pty,raw,echo=0,link=/tmp/ttyAGENT``
(the emulator takes one end, the agent's driver the other).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
from collections.abc import Callable

from drivers.emulator import Emulator, RigFeed, basic_rig


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="rig seed (cells differ in capacity, resistance, SOC)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument("--tick-s", type=float, default=0.1, help="rig step and register refresh period (wall s)")
    p.add_argument("--capacity-ah", type=float, default=5.0)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "emulate",
        help="serve a simulated rig over Modbus, CAN or serial (a peer for drivers)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    esub = p.add_subparsers(dest="emulate_protocol", metavar="PROTOCOL")
    esub.required = True

    m = esub.add_parser("modbus", help="BMS modules as Modbus devices (pymodbus server)")
    where = m.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=_hostport, metavar="HOST:PORT", help="serve Modbus TCP, e.g. 127.0.0.1:5020")
    where.add_argument("--rtu", metavar="PTY", help="serve Modbus RTU on a serial port / pty")
    m.add_argument("--profile", default="bms16", help="register map (built-in name or TOML path)")
    m.add_argument("--devices", type=_ints, default=[1], help="device ids, one module each (default 1)")
    m.add_argument("--baudrate", type=int, default=19200)
    m.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback TCP address (Modbus has no authentication: anyone who reaches the port can read it)",
    )
    m.add_argument("--fault", choices=["silent", "exception", "truncate", "corrupt"], help="misbehave from start")
    _common(m)
    m.set_defaults(func=cmd_modbus)

    c = esub.add_parser("can", help="a BMS broadcasting on a CAN bus (python-can)")
    c.add_argument("--interface", default="slcan", help="python-can interface (slcan, virtual, socketcan, ...)")
    c.add_argument("--channel", required=True, help="pty for slcan, bus name for virtual, can0 for socketcan")
    c.add_argument("--profile", default="bms16", help="DBC mapping profile (built-in name or TOML path)")
    c.add_argument("--bitrate", type=int, default=500_000)
    c.add_argument("--tty-baudrate", type=int, default=115200, help="slcan: serial speed")
    c.add_argument("--fault", choices=["silent", "error_frames", "corrupt", "garbage"], help="misbehave from start")
    _common(c)
    c.set_defaults(func=cmd_can)

    s = esub.add_parser("serial", help="a line-based instrument (SCPI cycler, streaming logger)")
    s.add_argument("--port", required=True, help="serial port / pty")
    s.add_argument("--profile", default="scpi_cycler", help="instrument profile (built-in name or TOML path)")
    s.add_argument("--channels", type=_ints, default=[1, 2, 3, 4], help="channels, one cell each")
    s.add_argument("--baudrate", type=int, default=115200)
    s.add_argument("--fault", choices=["silent", "garbage", "truncate", "error"], help="misbehave from start")
    _common(s)
    s.set_defaults(func=cmd_serial)


def _run(emulator: Emulator, banner: Callable[[], str]) -> int:
    """Serve until SIGTERM/SIGINT; the banner (printed once serving, so it names a port bound as 0) tells a
    caller the emulator is ready."""

    async def main() -> None:
        await emulator.start()
        try:
            print(banner(), flush=True)
            task = asyncio.ensure_future(emulator.tick_loop())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
            try:
                await task
            except asyncio.CancelledError:
                pass
        finally:
            await emulator.stop()

    try:
        asyncio.run(main())
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"battery-twin emulate: {exc}", file=sys.stderr)
        return 1
    return 0


def _feed(args: argparse.Namespace, cells: int) -> RigFeed:
    return RigFeed(basic_rig(cells, seed=args.seed, capacity_ah=args.capacity_ah), tick_s=args.tick_s, speed=args.speed)


def cmd_modbus(args: argparse.Namespace) -> int:
    from drivers.modbus.emulator import ModbusEmulator
    from drivers.modbus.profile import load_profile

    if args.tcp is not None and not args.allow_remote:
        try:
            loopback = ipaddress.ip_address(args.tcp[0]).is_loopback
        except ValueError:
            loopback = args.tcp[0] == "localhost"
        if not loopback:
            print(
                f"battery-twin emulate: refusing to serve Modbus on {args.tcp[0]} (not loopback) without "
                "--allow-remote",
                file=sys.stderr,
            )
            return 2
    profile = load_profile(args.profile)
    emu = ModbusEmulator(
        _feed(args, profile.cells * len(args.devices)),
        profile,
        args.devices,
        tcp=args.tcp,
        rtu=args.rtu,
        baudrate=args.baudrate,
    )
    for d in args.devices:
        if args.fault:
            emu.faults[d] = args.fault

    def banner() -> str:
        where = f"tcp {emu.tcp[0]}:{emu.tcp[1]}" if emu.tcp else f"rtu {args.rtu}"
        return (
            f"emulating {len(args.devices)} x {profile.name} ({profile.cells} cells each) on {where}, "
            f"device ids {','.join(map(str, args.devices))}"
        )

    return _run(emu, banner)


def cmd_can(args: argparse.Namespace) -> int:
    from drivers.can.emulator import CanEmulator
    from drivers.can.profile import load_profile

    loaded = load_profile(args.profile)
    opts = {"tty_baudrate": args.tty_baudrate} if args.interface == "slcan" else {}
    emu = CanEmulator(_feed(args, loaded.profile.cells), loaded, args.interface, args.channel, args.bitrate, opts)
    emu.fault = args.fault
    note = " (virtual buses reach peers in this process only)" if args.interface == "virtual" else ""
    return _run(
        emu,
        lambda: (
            f"emulating {loaded.profile.name} ({loaded.profile.cells} cells, {loaded.dbc_path.name}) on "
            f"{args.interface} {args.channel}{note}"
        ),
    )


def cmd_serial(args: argparse.Namespace) -> int:
    from drivers.serial.emulator import SerialEmulator

    emu = SerialEmulator(_feed(args, len(args.channels)), args.profile, args.port, args.channels, args.baudrate)
    emu.fault = args.fault
    return _run(
        emu, lambda: f"emulating {emu.profile.name} on {args.port}, channels {','.join(map(str, args.channels))}"
    )
