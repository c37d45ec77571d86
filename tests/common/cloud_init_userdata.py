"""Reads a seed's user-data as cloud-init does, with cloud-init's own modules (Debian's python3, cloud-init
22.4): the parts its user-data processor finds and the cloud-config its handler merges from them.

Usage: cloud_init_userdata.py USER_DATA OUT_DIR
Prints `part TYPE JSON-PAYLOAD` for each part and `config KEY JSON-VALUE` for each merged key (sorted, ASCII);
writes OUT_DIR/cloud-config.yaml (the merged config, for `cloud-init schema`) and OUT_DIR/authorized_keys (the
merged ssh_authorized_keys, for `ssh-keygen -l`).
"""

import json
import os
import sys
import tempfile

from cloudinit import helpers, safeyaml, user_data, util
from cloudinit.handlers.cloud_config import CloudConfigPartHandler

blob = open(sys.argv[1], "rb").read()
out_dir = sys.argv[2]
paths = helpers.Paths({"cloud_dir": tempfile.mkdtemp()})
message = user_data.UserDataProcessor(paths).process(blob)
handler = CloudConfigPartHandler(paths)
handler.handle_part(None, "__begin__", None, None, None, None)
for part in message.walk():
    if part.get_content_maintype() == "multipart":
        continue
    content_type = part.get_content_type()
    payload = util.fully_decoded_payload(part)
    print("part", content_type, json.dumps(payload))
    if content_type == "text/cloud-config":
        handler.handle_part(None, content_type, part.get_filename(), payload, None, dict(part))
config = handler.cloud_buf or {}
for key in sorted(config):
    print("config", key, json.dumps(config[key], sort_keys=True))
with open(os.path.join(out_dir, "cloud-config.yaml"), "w") as f:
    f.write("#cloud-config\n" + safeyaml.dumps(config))
with open(os.path.join(out_dir, "authorized_keys"), "w") as f:
    f.writelines(key + "\n" for key in config.get("ssh_authorized_keys", []))
