"""Graph passes: trace a model, find its channel groups, rebuild it at new widths.

No pass here imports tvm or touches hardware; each takes a GraphModule and returns a
new one (or an analysis), leaving its input untouched.
"""
