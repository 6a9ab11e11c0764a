"""The op check of untrusted SavedModels: crafted models are refused with the offending
op named, before TensorFlow runs anything; the allowlist holds only real, harmless ops.

`save_crafted` (also used by tests/test_export.py and tests/pipeline/test_evaluation_bad_input.py)
writes small working autoencoders that additionally read or write files."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

from robust_dae_tf import export, model_safety
from robust_dae_tf.errors import ExportError

IMAGE_SHAPE, LATENT_DIM = (32, 32, 1), 3

#: kind -> the op type the refusal must name.
CRAFTED = {
    "writes_at_load": "WriteFile",  # a resource initializer: runs inside tf.saved_model.load
    "reads_in_encode": "ReadFile",
    "py_function": "EagerPyFunc",
    "saves_in_encode": "SaveV2",  # a checkpoint write outside the saver functions
    "table_from_file": "InitializeTableFromTextFileV2",  # reads the file while loading
}


class _Crafted(tf.Module):
    """A linear autoencoder (32x32x1 <-> 3) plus the file access of `kind` on `target`."""

    def __init__(self, kind, target):
        super().__init__()
        rng = np.random.default_rng(0)
        self.kind, self.target = kind, target
        self.w_enc = tf.Variable(rng.normal(0, 0.03, (1024, LATENT_DIM)).astype(np.float32))
        self.w_dec = tf.Variable(rng.normal(0, 0.3, (LATENT_DIM, 1024)).astype(np.float32))
        if kind == "writes_at_load":

            class Writer(tf.saved_model.experimental.TrackableResource):
                def _create_resource(self):
                    return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

                def _initialize(self):
                    tf.io.write_file(target, "written while the model was loaded")

            self.writer = Writer()
        if kind == "table_from_file":
            init = tf.lookup.TextFileInitializer(target, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                                 tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
            self.table = tf.lookup.StaticHashTable(init, -1)

    @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32, name="images")])
    def encode(self, images):
        flat = tf.reshape(images, [-1, 1024])
        if self.kind == "py_function":
            flat = tf.py_function(lambda x: x, [flat], tf.float32)
        z = tf.matmul(flat, self.w_enc)
        if self.kind == "reads_in_encode":  # the latents carry the file's length: proof it was read
            z = z * 0.0 + tf.cast(tf.strings.length(tf.io.read_file(self.target)), tf.float32)
        if self.kind == "table_from_file":
            z = z + 0.0 * tf.cast(self.table.lookup(tf.constant("a")), tf.float32)
        if self.kind == "saves_in_encode":
            with tf.control_dependencies([tf.raw_ops.SaveV2(prefix=self.target, tensor_names=["z"],
                                                            shape_and_slices=[""], tensors=[z])]):
                z = tf.identity(z)
        return {"latents": z}

    @tf.function(input_signature=[tf.TensorSpec((None, LATENT_DIM), tf.float32, name="latents")])
    def decode(self, latents):
        return {"images": tf.reshape(tf.sigmoid(tf.matmul(latents, self.w_dec)), [-1, *IMAGE_SHAPE])}


def save_crafted(kind, path, target):
    """Saves the crafted autoencoder `kind` (a key of CRAFTED) to `path` with digits
    metadata; `target` is the file it reads or writes. Returns `path`."""
    tf.saved_model.save(_Crafted(kind, str(target)), str(path))
    with open(os.path.join(path, export.METADATA_FILE), "w") as f:
        json.dump({"dataset": "digits", "variant": f"crafted_{kind}", "image_shape": list(IMAGE_SHAPE),
                   "latent_dim": LATENT_DIM}, f)
    return str(path)


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_crafted_models_are_refused_naming_the_op_and_the_flag(tmp_path, kind):
    target = tmp_path / "target.txt"
    target.write_text("a\nb\n")
    path = save_crafted(kind, tmp_path / "model", target)
    with pytest.raises(ExportError) as err:
        model_safety.check_saved_model(path)
    message = str(err.value)
    assert CRAFTED[kind] in message and "--trust_model" in message and path in message
    assert len(message.splitlines()) == 1
    assert model_safety.check_saved_model(path, trust=True).meta_graphs  # trust skips the op check


def test_the_refusal_says_where_the_op_is(tmp_path):
    path = save_crafted("writes_at_load", tmp_path / "model", tmp_path / "pwned")
    bad = model_safety.disallowed_ops(model_safety.read_saved_model_proto(path))
    assert list(bad) == ["WriteFile"]
    assert any("initializer" in place for place in bad["WriteFile"]), bad


def test_allowlist_holds_only_registered_ops_and_none_that_touch_files_or_python():
    unregistered = [op for op in model_safety.ALLOWED_OPS | model_safety.CHECKPOINT_OPS
                    if op_def_registry.get(op) is None]
    assert not unregistered
    dangerous = {"ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "LoadAndRemapMatrix", "PyFunc",
                 "EagerPyFunc", "PyFuncStateless", "PrintV2", "Print", "DebugIdentity", "DebugIdentityV2",
                 "InitializeTableFromTextFileV2", "TFRecordDataset", "TextLineDataset", "WriteSummary",
                 "CreateSummaryFileWriter", "DecodeProtoV2", "Save", "Restore", "SaveSlices", "RestoreSlice",
                 "SaveDataset", "LoadDataset"} | model_safety.CHECKPOINT_OPS
    assert all(op_def_registry.get(op) is not None for op in dangerous)
    assert not dangerous & model_safety.ALLOWED_OPS


# ---- the graph walk, on hand-written protos ---------------------------------------------


def _func_attr(name, **nested):
    attr = attr_value_pb2.NameAttrList(name=name)
    for key, value in nested.items():
        attr.attr[key].CopyFrom(value)
    return attr_value_pb2.AttrValue(func=attr)


def _proto(top, functions, saver_nodes=()):
    """A SavedModel proto: `top` [(node name, op, {attr: AttrValue})] at the top level,
    `functions` {name: [(node name, op, attrs)]}, saver_def naming `saver_nodes`."""
    proto = saved_model_pb2.SavedModel()
    meta = proto.meta_graphs.add()

    def add(container, name, op, attrs):
        node = container.add(name=name, op=op)
        for key, value in attrs.items():
            node.attr[key].CopyFrom(value)

    for spec in top:
        add(meta.graph_def.node, *spec)
    for fname, nodes in functions.items():
        function = meta.graph_def.library.function.add()
        function.signature.name = fname
        for spec in nodes:
            add(function.node_def, *spec)
    if saver_nodes:
        meta.saver_def.save_tensor_name, meta.saver_def.restore_op_name = f"{saver_nodes[0]}:0", saver_nodes[1]
    return proto


SAVE_FN = [("s", "SaveV2", {}), ("m", "MergeV2Checkpoints", {}), ("f", "ShardedFilename", {})]
RESTORE_FN = [("r", "RestoreV2", {}), ("a", "AssignVariableOp", {})]
SAVER_TOP = [("save", "StatefulPartitionedCall", {"f": _func_attr("traced_save")}),
             ("restore", "StatefulPartitionedCall", {"f": _func_attr("traced_restore")})]


def test_checkpoint_ops_are_allowed_only_in_functions_the_saver_alone_reaches():
    functions = {"traced_save": SAVE_FN, "traced_restore": RESTORE_FN, "encode": [("x", "MatMul", {})]}
    proto = _proto(SAVER_TOP, functions, ("save", "restore"))
    assert model_safety.disallowed_ops(proto) == {}
    # encode calling the save function (through a nested function attr) makes it reachable.
    functions["encode"] = [("c", "If", {"then_branch": _func_attr("wrapper"), "else_branch": _func_attr("wrapper")})]
    functions["wrapper"] = [("c", "PartitionedCall", {"f": _func_attr("traced_save")})]
    bad = model_safety.disallowed_ops(_proto(SAVER_TOP, functions, ("save", "restore")))
    assert set(bad) == {"SaveV2", "MergeV2Checkpoints"}
    # The restore function (run by TensorFlow 1 loaders) may restore but not save.
    functions = {"traced_save": SAVE_FN, "traced_restore": RESTORE_FN + [("w", "SaveV2", {})]}
    bad = model_safety.disallowed_ops(_proto(SAVER_TOP, functions, ("save", "restore")))
    assert bad == {"SaveV2": ["function traced_restore"]}
    # Without a saver_def nothing is a saver function.
    assert set(model_safety.disallowed_ops(_proto(SAVER_TOP, functions))) >= {"SaveV2", "RestoreV2"}


def test_a_call_of_a_primitive_op_counts_as_that_op():
    # A call attr naming no library function would run the registered op of that name.
    top = [("n", "StatefulPartitionedCall", {"f": _func_attr("WriteFile")}),
           ("m", "PartitionedCall", {"f": _func_attr("c", inner=_func_attr("MatchingFiles"))})]
    nested = {"encode": [("n", "While", {"cond": _func_attr("c"), "body": _func_attr("ReadFile")})],
              "c": [("x", "Less", {})]}
    assert set(model_safety.disallowed_ops(_proto(top, nested))) == {"WriteFile", "ReadFile", "MatchingFiles"}
    # A library function named like an op is checked both as that op and as a function.
    clash = {"Relu": [("w", "WriteFile", {})]}
    top = [("n", "PartitionedCall", {"f": _func_attr("Relu")})]
    assert set(model_safety.disallowed_ops(_proto(top, clash))) == {"WriteFile"}


def test_every_meta_graph_is_walked():
    proto = _proto([("x", "MatMul", {})], {})
    other = proto.meta_graphs.add()
    other.graph_def.node.add(name="r", op="ReadFile")
    assert set(model_safety.disallowed_ops(proto)) == {"ReadFile"}
