"""Loading manifests (pure core): YAML files with locations, schema findings, the git work tree's commit."""
