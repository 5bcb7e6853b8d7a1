"""`python -m tfp_vi_estimators COMMAND`: the library's runnable jobs."""

import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "demo": "tfp_vi_estimators.demo",
        "report": "tfp_vi_estimators.report.cli",
    }
    if not argv or argv[0] not in commands:
        print(
            "usage: python -m tfp_vi_estimators {" + ",".join(commands) + "} [options]",
            file=sys.stderr,
        )
        return 2
    import importlib

    importlib.import_module(commands[argv[0]]).main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
