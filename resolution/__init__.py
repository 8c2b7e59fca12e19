"""Pure DeepStream resolution: what an instance's GIEs, batches and TensorRT engines effectively are once its
profile, overrides and cameras are combined. Below the rules (which judge the resolved values) and the compiler
(which renders them); imports only :mod:`dsfleet.schemas`."""
