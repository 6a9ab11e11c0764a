"""Refusing untrusted SavedModels before TensorFlow loads them.

Loading a SavedModel runs no pickle or Python code, but it does run TensorFlow graphs:
resource initializers execute during `tf.saved_model.load`, and `encode` / `decode`
execute whatever ops their functions hold. TensorFlow has ops that read and write
files (`ReadFile`, `WriteFile`, `MatchingFiles`, table initializers from text files,
`tf.data` readers, summary writers, `PrintV2` to a file, `DebugIdentity`, `ImmutableConst`,
...), call back into Python (`PyFunc`, `EagerPyFunc`) or talk to other processes
(`Rpc`, collectives, send/receive). So, like Keras' `safe_mode`, `check_saved_model`
parses `saved_model.pb` without loading it and walks EVERY graph: each meta graph's
top-level nodes and every function of its library (signatures, initializers,
restore and gradient functions, loop and branch bodies), following function-valued
attributes (a call whose `f` names a primitive op runs that op, so it counts as one).
Every op type must be in `ALLOWED_OPS`: the math, neural-network, array, control-flow,
variable and random ops an encoder/decoder (or an attack through one) needs, which
covers every model this project exports. Anything else is refused with its name.

The checkpoint ops `SaveV2`, `RestoreV2` and `MergeV2Checkpoints` read and write
files too; every SavedModel has them in the save and restore functions its `saver_def`
names, which `tf.saved_model.load` does not run (it restores the variables itself) and
which write only to the path a caller passes when re-saving the model. `SaveV2` and
`MergeV2Checkpoints` are allowed only in functions that the save node alone reaches,
`RestoreV2` only in functions the restore node alone reaches; in `encode`, an
initializer or the restore function, a write is refused like `WriteFile`.

`trust=True` (the CLI flag `--trust_model`) skips the check: a trusted model can run
any TensorFlow op with the permissions of the process.
"""

from __future__ import annotations

import os

from robust_dae_tf.errors import ExportError

TRUST_FLAG = "--trust_model"
SAVED_MODEL_FILE = "saved_model.pb"

_STRUCTURE = """
    Const Placeholder PlaceholderWithDefault Identity IdentityN NoOp Snapshot StopGradient PreventGradient
    EnsureShape CheckNumerics CheckNumericsV2 Assert ZerosLike OnesLike
    PartitionedCall StatefulPartitionedCall
    If StatelessIf While StatelessWhile Case StatelessCase
    Enter Exit Merge Switch NextIteration LoopCond ControlTrigger
"""
_VARIABLES = """
    VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp VarIsInitializedOp
    DestroyResourceOp DisableCopyOnRead ResourceGather ResourceGatherNd VariableShape
    VariableV2 Assign IsVariableInitialized
"""
_MATH = """
    Add AddV2 AddN Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod TruncateDiv TruncateMod Mod
    Neg Abs Sign Square Sqrt Rsqrt Reciprocal Inv Exp Expm1 Log Log1p Pow SquaredDifference
    Maximum Minimum Floor Ceil Round Rint ClipByValue
    Tanh Sigmoid Sin Cos Tan Asin Acos Atan Atan2 Sinh Cosh Asinh Acosh Atanh
    Erf Erfc Erfinv Ndtri Lgamma Digamma Igamma Igammac Betainc Polygamma Zeta Xlogy Xdivy Xlog1py
    IsNan IsInf IsFinite Equal NotEqual Less LessEqual Greater GreaterEqual ApproximateEqual
    LogicalAnd LogicalOr LogicalNot Select SelectV2 Cast
    Sum Mean Prod Max Min All Any ArgMax ArgMin EuclideanNorm Cumsum Cumprod CumulativeLogsumexp
    SegmentSum SegmentMean SegmentMax SegmentMin UnsortedSegmentSum UnsortedSegmentMax UnsortedSegmentMin
    MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum Range LinSpace Bucketize TopKV2 InTopKV2
    LowerBound UpperBound
    MatrixBandPart MatrixDiagV3 MatrixDiagPartV3 MatrixSetDiagV3 MatrixDiag MatrixDiagPart MatrixSetDiag
    MatrixInverse MatrixDeterminant LogMatrixDeterminant Cholesky MatrixTriangularSolve MatrixSolve
    MatrixSolveLs Qr Svd SelfAdjointEigV2 MatrixExponential MatrixLogarithm
"""
_NN = """
    BiasAdd BiasAddV1 Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Softmax LogSoftmax
    Conv2D Conv3D DepthwiseConv2dNative Conv2DBackpropInput Conv3DBackpropInputV2
    DepthwiseConv2dNativeBackpropInput Conv2DBackpropFilter Conv3DBackpropFilterV2
    DepthwiseConv2dNativeBackpropFilter
    MaxPool MaxPoolV2 MaxPool3D AvgPool AvgPool3D FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3
    L2Loss LRN SoftmaxCrossEntropyWithLogits SparseSoftmaxCrossEntropyWithLogits
    ResizeBilinear ResizeNearestNeighbor ResizeBicubic ResizeArea ScaleAndTranslate CropAndResize
    DepthToSpace SpaceToDepth SpaceToBatchND BatchToSpaceND ExtractImagePatches Dilation2D
    RGBToHSV HSVToRGB AdjustContrastv2 AdjustHue AdjustSaturation
    BiasAddGrad ReluGrad Relu6Grad EluGrad SeluGrad LeakyReluGrad SoftplusGrad SoftsignGrad
    SigmoidGrad TanhGrad RsqrtGrad SqrtGrad ReciprocalGrad InvGrad MaxPoolGrad MaxPoolGradV2
    AvgPoolGrad FusedBatchNormGradV3 ResizeBilinearGrad ResizeNearestNeighborGrad BroadcastGradientArgs
"""
_ARRAY = """
    Reshape Shape ShapeN Size Rank ExpandDims Squeeze Pack Unpack Concat ConcatV2 ConcatOffset
    Split SplitV Slice StridedSlice StridedSliceGrad TensorStridedSliceUpdate Tile Transpose Fill
    Gather GatherV2 GatherNd ScatterNd TensorScatterUpdate TensorScatterAdd TensorScatterSub
    TensorScatterMax TensorScatterMin BroadcastTo BroadcastArgs Reverse ReverseV2 Where OneHot
    InvertPermutation Unique UniqueV2 DynamicStitch ParallelDynamicStitch DynamicPartition Diag DiagPart
    Pad PadV2 MirrorPad MirrorPadGrad Roll Cross Empty
    TensorListReserve TensorListFromTensor TensorListStack TensorListGetItem TensorListSetItem
    TensorListPushBack TensorListPopBack TensorListElementShape TensorListLength EmptyTensorList
    TensorListConcatV2 TensorListSplit TensorListGather TensorListScatterIntoExistingList
    TensorArrayV3 TensorArrayWriteV3 TensorArrayReadV3 TensorArrayGatherV3 TensorArrayScatterV3
    TensorArraySizeV3 TensorArrayCloseV3 TensorArrayConcatV3 TensorArraySplitV3 TensorArrayGradV3
    StringJoin StaticRegexFullMatch ShardedFilename
"""
_RANDOM = """
    RandomUniform RandomStandardNormal TruncatedNormal RandomUniformInt RandomShuffle Multinomial
    RandomGamma RandomPoissonV2
    StatelessRandomUniform StatelessRandomNormal StatelessTruncatedNormal StatelessRandomUniformInt
    StatelessRandomUniformV2 StatelessRandomNormalV2 StatelessTruncatedNormalV2 StatelessRandomUniformIntV2
    StatelessRandomUniformFullIntV2 StatelessRandomGetKeyCounter StatelessRandomGetKeyCounterAlg
    StatelessRandomGetAlg StatelessMultinomial StatelessRandomGammaV3 StatelessShuffle
    RngReadAndSkip RngSkip StatefulUniform StatefulStandardNormalV2 StatefulTruncatedNormal
    StatefulUniformInt StatefulUniformFullInt
"""

#: Op types allowed anywhere in a SavedModel: computations on tensors and variables only
#: (no file, process, network or Python access). Every name is a registered TensorFlow op
#: (tests/test_model_safety.py checks it).
ALLOWED_OPS = frozenset(" ".join([_STRUCTURE, _VARIABLES, _MATH, _NN, _ARRAY, _RANDOM]).split())

#: Checkpoint file I/O, allowed only in the save (SAVE_OPS) and restore (RESTORE_OPS)
#: functions named by the saver_def.
SAVE_OPS, RESTORE_OPS = frozenset({"SaveV2", "MergeV2Checkpoints"}), frozenset({"RestoreV2"})
CHECKPOINT_OPS = SAVE_OPS | RESTORE_OPS


def read_saved_model_proto(path: str):
    """The parsed `<path>/saved_model.pb` (the file `tf.saved_model.load` reads first), or one
    ExportError naming the directory or file."""
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    from google.protobuf import message  # pylint: disable=import-outside-toplevel

    pb_path = os.path.join(path, SAVED_MODEL_FILE)
    if not os.path.isdir(path) or not os.path.isfile(pb_path):
        raise ExportError(
            f"{path} is not a SavedModel directory (no {SAVED_MODEL_FILE}); pass the directory written by bin/train.py."
        )
    proto = saved_model_pb2.SavedModel()
    try:
        with open(pb_path, "rb") as f:
            proto.ParseFromString(f.read())
    except OSError as err:
        raise ExportError(f"cannot read {pb_path}: {err.strerror or err}.") from err
    except message.DecodeError as err:
        raise ExportError(f"{pb_path} is corrupt (not a SavedModel protocol buffer: {err}); re-export the model.") from err
    if not proto.meta_graphs:
        raise ExportError(f"{pb_path} holds no graph (empty or truncated file); re-export the model.")
    return proto


def _attr_functions(attr_value):
    """Names of the functions an AttrValue refers to, including nested NameAttrList attrs."""
    found = []
    funcs = ([attr_value.func] if attr_value.HasField("func") else []) + list(attr_value.list.func)
    for func in funcs:
        found.append(func.name)
        for nested in func.attr.values():
            found.extend(_attr_functions(nested))
    return found


def _node_names(node):
    """(op type, names in function-valued attrs) of a NodeDef."""
    return node.op, [name for value in node.attr.values() for name in _attr_functions(value)]


def _graph_ops(meta_graph) -> dict:
    """{op type: [where it occurs]} for one MetaGraphDef, without the checkpoint ops of the
    functions only the saver_def's save node (SaveV2, MergeV2Checkpoints) or restore node
    (RestoreV2) reaches."""
    from tensorflow.python.framework import op_def_registry  # pylint: disable=import-outside-toplevel

    graph = meta_graph.graph_def
    functions = {f.signature.name: f for f in graph.library.function}

    def split(nodes):
        """(op types, called library functions) of some nodes. A called name that is not a
        library function (or is also a registered op) runs as an op and counts as one."""
        ops, calls = set(), set()
        for node in nodes:
            op, attr_names = _node_names(node)
            for name in [op, *attr_names]:
                if name in functions:
                    calls.add(name)
                if name not in functions or op_def_registry.get(name) is not None:
                    ops.add(name)
        return ops, calls

    def reach(roots):
        seen, todo = set(), list(roots)
        while todo:
            name = todo.pop()
            if name not in seen and name in functions:
                seen.add(name)
                todo.extend(split(functions[name].node_def)[1])
        return seen

    # The saver_def names a save node (SaveV2, MergeV2Checkpoints) and a restore node (RestoreV2).
    # A function may use those ops only if that node alone reaches it: not the other saver node,
    # a signature, the object graph (initializers, endpoints), a gradient or any other function.
    saver = meta_graph.saver_def
    saver_roles = {saver.save_tensor_name.split(":")[0]: SAVE_OPS,
                   saver.restore_op_name.split(":")[0].lstrip("^"): RESTORE_OPS}
    saver_roles.pop("", None)
    role_reach = {name: reach(split([n for n in graph.node if n.name == name])[1]) for name in saver_roles}
    saver_reach = set().union(*role_reach.values())
    entries = set(split([n for n in graph.node if n.name not in saver_roles])[1])
    entries |= set(meta_graph.object_graph_def.concrete_functions)
    entries |= {g.gradient_func for g in graph.library.gradient} | {g.function_name for g in graph.library.gradient}
    entries |= set(functions) - saver_reach
    exempt: dict = {}  # function -> checkpoint ops it may use
    for name, reached in role_reach.items():
        others = entries | set().union(*(r for n, r in role_reach.items() if n != name))
        for function in reached - reach(others):
            exempt[function] = saver_roles[name]

    where: dict = {}
    for op in split(graph.node)[0]:
        where.setdefault(op, []).append("the top-level graph")
    for name, function in functions.items():
        ops = split(function.node_def)[0] - exempt.get(name, frozenset())
        for op in ops:
            where.setdefault(op, []).append(f"function {name}")
    return where


def disallowed_ops(proto) -> dict:
    """{op type outside ALLOWED_OPS: sorted places it occurs} over every meta graph of a
    SavedModel proto."""
    found: dict = {}
    for meta_graph in proto.meta_graphs:
        for op, places in _graph_ops(meta_graph).items():
            if op not in ALLOWED_OPS:
                found.setdefault(op, set()).update(places)
    return {op: sorted(places) for op, places in sorted(found.items())}


def check_saved_model(path: str, trust: bool = False):
    """Parses `<path>/saved_model.pb` and, unless `trust`, raises ExportError naming every
    op type outside ALLOWED_OPS (and where it occurs). Returns the parsed proto."""
    proto = read_saved_model_proto(path)
    if trust:
        return proto
    bad = disallowed_ops(proto)
    if bad:
        shown = [f"{op} (in {places[0]}{f' and {len(places) - 1} more' if len(places) > 1 else ''})"
                 for op, places in list(bad.items())[:8]]
        more = f" and {len(bad) - 8} more op types" if len(bad) > 8 else ""
        raise ExportError(
            f"refusing to load the SavedModel {path}: its graphs hold TensorFlow ops outside what an "
            f"encoder/decoder needs (such ops can read or write files or run code when the model is loaded or "
            f"called): {', '.join(shown)}{more}. Load it only if you trust its source: pass {TRUST_FLAG} "
            "(load_saved_model(path, trust=True))."
        )
    return proto
