"""One module per layer ssd compares, each holding its reader, its checks, its description and
its JSON part, and declaring its layer (declare_layer) and its checks (register_check) when
imported. Importing any of them runs this file first, which imports them all, so that the
catalog is whole; the order here is the order in which their checks run (and so their findings
are listed): a layer module imports only the layer modules above it here."""
# ruff: noqa: F401 (imported for their declarations)
from ssd.layers import lb
from ssd.layers import networkdb
from ssd.layers import overlay
from ssd.layers import dns
from ssd.layers import ingress
from ssd.layers import host
from ssd.layers import probe
