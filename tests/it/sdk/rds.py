"""Calls dbferry's RDS-compatible API with the official Alibaba Cloud SDKs.

Reads a JSON list of calls on stdin and prints a JSON list of results, one
per call, in order. A call:

    {"sdk": "v1" | "v3",          # aliyun-python-sdk-core | alibabacloud-tea-openapi
     "endpoint": "127.0.0.1:PORT", "protocol": "http" | "https", "ca": "cert.pem",
     "key": "...", "secret": "...", "action": "...", "params": {...},
     "method": "GET" | "POST", "format": "XML",
     "timestamp": "2001-01-01T00:00:00Z",   # forces the signed timestamp
     "nonce": "..."}                        # forces the signature nonce

A result: {"status": int, "body": <parsed JSON or null>, "raw": str,
"code": str | null, "message": str | null, "error": bool}. XML bodies are
returned raw; the caller parses them.
"""

import json
import sys


def v1(call):
    from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.http import protocol_type
    from aliyunsdkcore.request import CommonRequest
    from aliyunsdkcore.utils import parameter_helper

    if call.get("timestamp"):
        parameter_helper.get_iso_8061_date = lambda: call["timestamp"]
    if call.get("nonce"):
        parameter_helper.get_uuid = lambda: call["nonce"]
    verify = call.get("ca") if call.get("protocol") == "https" else None
    client = AcsClient(call["key"], call["secret"], "cn-hangzhou", auto_retry=False, max_retry_time=0, timeout=120, verify=verify)
    request = CommonRequest(domain=call["endpoint"], version="2014-08-15", action_name=call["action"], product="Rds")
    # The SDK compares with `is`: pass its own constants.
    request.set_protocol_type(protocol_type.HTTPS if call.get("protocol") == "https" else protocol_type.HTTP)
    method = call.get("method", "GET")
    request.set_method(method)
    request.set_accept_format(call.get("format", "JSON"))
    for name, value in call.get("params", {}).items():
        if method == "POST":
            request.add_body_params(name, str(value))
        else:
            request.add_query_param(name, str(value))
    try:
        status, headers, body, exception = client._implementation_of_do_action(request)
    except ClientException as e:
        return {"error": True, "status": 0, "code": e.get_error_code(), "message": e.get_error_msg(), "raw": "", "body": None}
    raw = body.decode("utf-8") if isinstance(body, bytes) else str(body)
    result = {"error": exception is not None, "status": status, "raw": raw, "body": None, "code": None, "message": None,
              "content_type": headers.get("Content-Type") or headers.get("content-type")}
    try:
        result["body"] = json.loads(raw)
    except ValueError:
        pass
    if isinstance(exception, ServerException):
        # What the SDK itself made of the error response.
        result["code"] = exception.get_error_code()
        result["message"] = exception.get_error_msg()
        result["sdk_status"] = exception.get_http_status()
    return result


def v3(call):
    from alibabacloud_tea_openapi import exceptions, utils_models
    from alibabacloud_tea_openapi.client import Client
    from alibabacloud_tea_openapi.utils import Utils
    from darabonba.runtime import RuntimeOptions

    if call.get("timestamp"):
        Utils.get_timestamp = staticmethod(lambda: call["timestamp"])
    if call.get("nonce"):
        Utils.get_nonce = staticmethod(lambda: call["nonce"])
    config = utils_models.Config(
        access_key_id=call["key"], access_key_secret=call["secret"], endpoint=call["endpoint"],
        protocol=call.get("protocol", "http"), read_timeout=120000, connect_timeout=10000, ca=call.get("ca"))
    client = Client(config)
    query = {k: str(v) for k, v in call.get("params", {}).items()}
    if call.get("format"):
        query["Format"] = call["format"]
    xml = call.get("format", "").upper() == "XML"
    params = utils_models.Params(
        action=call["action"], version="2014-08-15", protocol=call.get("protocol", "http").upper(),
        method=call.get("method", "POST"), auth_type="AK", style="RPC", pathname="/",
        req_body_type="formData", body_type="string" if xml else "json")
    request = utils_models.OpenApiRequest(query=Utils.query(query))
    try:
        response = client.call_api(params, request, RuntimeOptions(autoretry=False, max_attempts=1))
    except (exceptions.ClientException, exceptions.ServerException) as e:
        return {"error": True, "status": e.status_code, "code": e.code, "message": e.message, "body": e.data, "raw": ""}
    body = response.get("body")
    if xml:
        return {"error": False, "status": response.get("statusCode"), "raw": body, "body": None, "code": None, "message": None}
    return {"error": False, "status": response.get("statusCode"), "raw": json.dumps(body), "body": body, "code": None, "message": None}


def saved():
    """The functions a call may patch (timestamp, nonce), to restore after it."""
    from aliyunsdkcore.utils import parameter_helper
    from alibabacloud_tea_openapi.utils import Utils

    return (parameter_helper.get_iso_8061_date, parameter_helper.get_uuid,
            Utils.__dict__["get_timestamp"], Utils.__dict__["get_nonce"])


def restore(functions):
    from aliyunsdkcore.utils import parameter_helper
    from alibabacloud_tea_openapi.utils import Utils

    parameter_helper.get_iso_8061_date, parameter_helper.get_uuid = functions[0], functions[1]
    Utils.get_timestamp, Utils.get_nonce = functions[2], functions[3]


def main():
    calls = json.load(sys.stdin)
    results = []
    for call in calls:
        patched = saved()
        try:
            results.append(v1(call) if call["sdk"] == "v1" else v3(call))
        except Exception as e:  # report, so the Rust side shows it with the call
            results.append({"error": True, "status": -1, "code": "python:" + type(e).__name__, "message": str(e), "body": None, "raw": ""})
        finally:
            restore(patched)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
