"""Unpacks an OVA with Python's tarfile and checks it as ESXi reads one: the descriptor first and the manifest last,
ustar headers, well-formed XML whose References name each disk member with its exact size, and a manifest line
of the given algorithm for the descriptor and each disk that matches its bytes. Prints the disks' names, one per line.

Usage: check_ova.py OVA INTO ALGORITHM
"""
import hashlib
import os
import sys
import tarfile
import xml.etree.ElementTree as ET

ova, into, algo = sys.argv[1], sys.argv[2], sys.argv[3]
with tarfile.open(ova, format=tarfile.USTAR_FORMAT) as t:
    members = t.getmembers()
    names = [m.name for m in members]
    assert names[0].endswith('.ovf') and names[-1].endswith('.mf'), names
    disks = names[1:-1]
    assert disks and all(n.endswith('.vmdk') for n in disks), names
    assert all(m.isreg() and m.mode == 0o644 for m in members)
    t.extractall(into, filter='data')
OVF = '{http://schemas.dmtf.org/ovf/envelope/1}'
root = ET.parse(f'{into}/{names[0]}').getroot()
files = root.findall(f'{OVF}References/{OVF}File')
assert [f.get(f'{OVF}href') for f in files] == disks, ([f.get(f'{OVF}href') for f in files], disks)
for f in files:
    href, size = f.get(f'{OVF}href'), int(f.get(f'{OVF}size'))
    assert size == os.path.getsize(f'{into}/{href}'), (href, size)
lines = open(f'{into}/{names[-1]}').read().splitlines()
assert len(lines) == 1 + len(disks), lines
for line in lines:
    alg, rest = line.split('(', 1)
    name, digest = rest.split(')= ')
    assert alg == algo, line
    assert hashlib.new(algo.lower(), open(f'{into}/{name}', 'rb').read()).hexdigest() == digest, line
print('\n'.join(disks))
