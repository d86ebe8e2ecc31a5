"""A controller with more than 1024 files open (sockets of many clients, store files) still programs
nftables: libnftables waits on its netlink socket with select(), which aborts the whole process when
that socket's number is 1024 or more, so the driver uses the nft command then."""

import os

from vnstitch.drivers.linux import nft


def test_nftables_calls_survive_a_process_with_over_1024_open_files(lab):
    held = []
    try:
        while len(held) < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        assert held[-1] >= 1024
        assert not nft._low_fds_free()
        node_ns = lab.driver.lab.node_ns("n1")
        nft.ensure_base(node_ns)                  # would abort the interpreter through libnftables
        seen = lab.driver.observe()               # nft list ruleset per node, every pass
        assert seen.networks, "the lab's networks are still observed"
    finally:
        for fd in held:
            os.close(fd)
    assert nft._low_fds_free()
