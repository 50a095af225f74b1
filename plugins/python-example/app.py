"""python-example: a connector source plugin written in Python.

`connector plugin build` builds it with componentize-py against the
frozen WIT world `connector:source@0.1.0`, which the `connector` binary
carries (docs/plugin-guide.md, "Other languages", tells the rest). It
reads a chat log in CSV from a folder the operator grants:

    id,conversation,sender_id,sender_name,sender_email,sent_at_ms,text

one conversation (a room) per distinct `conversation` value, its
participants being everyone who wrote in it. Configuration:
{"path": "/export/chat.csv", "page_size": 100}. The checkpoint is the
number of data rows already delivered, as decimal text.
"""

import csv
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import log
from wit_world.imports.types import SourceError_InvalidConfig
from wit_world.exports.source import PluginInfo


def parse_config(config_json: str) -> dict:
    try:
        config = json.loads(config_json)
    except ValueError as e:
        raise Err(SourceError_InvalidConfig(f"configuration is not JSON: {e}"))
    if not isinstance(config, dict) or not isinstance(config.get("path"), str):
        raise Err(SourceError_InvalidConfig('missing "path": the guest path of the CSV file'))
    unknown = set(config) - {"path", "page_size"}
    if unknown:
        raise Err(SourceError_InvalidConfig(f"unknown fields: {sorted(unknown)}"))
    page_size = config.get("page_size", 100)
    if not isinstance(page_size, int) or not 1 <= page_size <= 5000:
        raise Err(SourceError_InvalidConfig("page_size must be 1 to 5000"))
    return {"path": config["path"], "page_size": page_size}


class Source(wit_world.exports.Source):
    def info(self) -> PluginInfo:
        return PluginInfo(name="python-example", version="0.1.0", sdk_version="componentize-py")

    def validate_config(self, config_json: str) -> None:
        parse_config(config_json)
        if log.enabled(log.Level.DEBUG):
            log.log(log.Level.DEBUG, "configuration accepted", [])
