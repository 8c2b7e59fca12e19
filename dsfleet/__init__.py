"""dsfleet: a declarative, GitOps-style reconciler for fleets of NVIDIA DeepStream containers.

One namespace over the project's source folders:

- :mod:`dsfleet.schemas`: pydantic models of everything that crosses a boundary (manifests, DeepStream key
  tables, node configs, wire messages) and the small pure helpers both sides share;
- :mod:`dsfleet.policies`: pure rules over a whole desired state;
- :mod:`dsfleet.reconciler`: the coordinator side (loading, compiling, planning, store, bus, API, ``dsfleet``);
- :mod:`dsfleet.agent`: the host side (container plans, Docker runtime, files, ``dsfleet-agent``);
- :mod:`dsfleet.plumbing`: settings, logging and the Kafka client both long-running sides use.

Install ``dsfleet[agent]`` on a GPU host, ``dsfleet[coordinator]`` where the coordinator runs.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dsfleet")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"
