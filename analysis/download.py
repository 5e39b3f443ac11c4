"""Fetch Epoch AI's extraction of the Chinchilla runs (svg_extracted_data.csv) from GitHub.

The file is pinned to one commit of epoch-research/analyzing-chinchilla and checked against its
sha256, so the data a fit is compared with is always the same. The download goes to a temporary
file that replaces the target only once it is complete and verified.
"""

from __future__ import annotations

import hashlib
import pathlib
import urllib.error
import urllib.request

from scaling import files

EPOCH_COMMIT = "92258837425e1b5f2851d624287f0120583a3d0e"
EPOCH_CHINCHILLA_URL = ("https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/"
                        f"{EPOCH_COMMIT}/data/svg_extracted_data.csv")
EPOCH_CHINCHILLA_SHA256 = "193478df4e90f040016431996c45682659306840ecdadf83cfb9cd5ca0aa1b30"
FILE_NAME = "svg_extracted_data.csv"
TIMEOUT_SECONDS = 30

# The opener is a module attribute so that tests can stand in for the network.
open_url = urllib.request.urlopen


def download_chinchilla(directory) -> pathlib.Path:
    """Download the Chinchilla data into `directory` (created once the file is in hand) and
    return the file's path. Raises RuntimeError, naming the URL, if the download fails or the
    content is not the expected file; nothing is left behind in that case, not even the folder."""
    directory = pathlib.Path(directory)
    try:
        with open_url(EPOCH_CHINCHILLA_URL, timeout=TIMEOUT_SECONDS) as response:
            content = response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise RuntimeError(f"could not download {EPOCH_CHINCHILLA_URL}: {error}") from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != EPOCH_CHINCHILLA_SHA256:
        raise RuntimeError(f"downloaded {EPOCH_CHINCHILLA_URL} but its sha256 is {digest}, expected "
                           f"{EPOCH_CHINCHILLA_SHA256}; not saved")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RuntimeError(f"downloaded {EPOCH_CHINCHILLA_URL} but cannot create {directory} "
                           f"({error.strerror}); not saved") from None
    target = directory / FILE_NAME
    files.write_bytes_atomic(target, content)
    return target
