"""The generated Prometheus rule files (powerplane-*.yaml) and their promtool tests, shipped as
package data (``powerplane.resources.rule_files()``); ``powerplane rules build`` writes them."""
