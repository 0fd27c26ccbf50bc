"""The swarm-wide modes: one short-lived job runs ssd on every node; gossip-consistency
compares their views of a network, --all-nodes gathers their node checks."""
