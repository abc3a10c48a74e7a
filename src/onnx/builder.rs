//! A thin helper over the ONNX protobuf messages: nodes with fresh output names,
//! initializers, attributes and typed graph inputs and outputs.

use onnx_protobuf::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};

/// One dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size (the batch).
    Named(&'static str),
}

/// Collects nodes and initializers of one graph.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

impl GraphBuilder {
    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    /// Adds an f32 initializer named `name` (made unique) and returns its name.
    pub fn f32_tensor(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::FLOAT as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a 1-D i64 initializer (shapes for Reshape) and returns its name.
    pub fn i64_tensor(&mut self, name: &str, data: &[i64]) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: DataType::INT64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Adds a node with one output of a fresh name and returns that name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_lowercase());
        self.node_to(op, inputs, attributes, &[output.as_str()]);
        output
    }

    /// Adds a node whose outputs have the given names.
    pub fn node_to(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        outputs: &[&str],
    ) {
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            name,
            op_type: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attributes,
            ..Default::default()
        });
    }

    /// Adds a node with `n` outputs of fresh names and returns them.
    pub fn node_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        n: usize,
    ) -> Vec<String> {
        let outputs: Vec<String> = (0..n).map(|_| self.fresh(&op.to_lowercase())).collect();
        let refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        self.node_to(op, inputs, attributes, &refs);
        outputs
    }

    /// The finished model.
    pub fn finish(
        self,
        name: &str,
        opset: i64,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
    ) -> ModelProto {
        let graph = GraphProto {
            name: name.to_string(),
            node: self.nodes,
            initializer: self.initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        };
        ModelProto {
            // IR version 8 is what opset 17 shipped with (ONNX 1.12).
            ir_version: 8,
            producer_name: "revstream".to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
                ..Default::default()
            }],
            graph: Some(graph).into(),
            ..Default::default()
        }
    }
}

/// An f32 tensor's description for graph inputs and outputs.
pub fn f32_value(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: Some(TensorShapeProto {
            dim,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        type_: AttributeType::INT.into(),
        i: value,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        type_: AttributeType::INTS.into(),
        ints: values.to_vec(),
        ..Default::default()
    }
}
