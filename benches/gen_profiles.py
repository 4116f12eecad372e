#!/usr/bin/env python3
"""Writes a session-profiles file with N profiles for the benchmark: a mix of
ACL kinds and multi-host profiles, so the broker does real filtering work."""
import sys

def main() -> None:
    count = int(sys.argv[1])
    out = ["[DEFAULT]", "command=TERMINAL", "user=BROKER_USER", "acl-any-order=deny-allow", ""]
    for i in range(count):
        out.append(f"[p{i:04d}]")
        out.append(f"name=Profile {i}")
        out.append(f"command={['KDE', 'XFCE', 'TERMINAL', 'MATE'][i % 4]}")
        hosts = [f"srv{i % 7}-{j} (127.0.0.{1 + j}:22)" for j in range(1 + i % 3)]
        out.append("host=" + ", ".join(hosts))
        kind = i % 5
        if kind == 1:
            out += ["acl-users-allow=xbt-alice,xbt-bob", "acl-users-deny=ALL", "acl-users-order=allow-deny"]
        elif kind == 2:
            out += ["acl-groups-allow=xbt-staff", "acl-groups-deny=ALL", "acl-groups-order=allow-deny"]
        elif kind == 3:
            out += ["acl-clients-allow=127.0.0.0/8,::1", "acl-clients-deny=ALL", "acl-clients-order=allow-deny"]
        elif kind == 4:
            out += ["acl-users-deny=xbt-carol", "acl-users-order=allow-deny"]
        out.append("")
    sys.stdout.write("\n".join(out))

if __name__ == "__main__":
    main()
