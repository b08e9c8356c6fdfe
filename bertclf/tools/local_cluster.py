"""TF_CONFIG values for n multi_worker_mirrored workers on 127.0.0.1 (the tests' and tools/fault_injection.py's
local cluster). Plain Python: no TensorFlow."""
import json
import socket


def free_ports(n):
  """n ports that were free on 127.0.0.1 a moment ago (the OS picks them)."""
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def worker_tf_configs(n):
  """[TF_CONFIG JSON string] for workers 0..n-1 of one cluster on free local ports; worker 0 is the chief."""
  cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(n)]}
  return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(n)]
