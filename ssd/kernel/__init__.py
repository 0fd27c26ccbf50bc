"""The kernel readers: namespaces, netlink (IPVS, addresses, links, neighbours), iptables,
/proc, the embedded DNS resolver and the prober. They read; they judge nothing."""
