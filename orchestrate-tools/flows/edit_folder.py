"""Flow: edit every image in a bucket folder and answer with one summary."""

from ibm_watsonx_orchestrate.flow_builder.flows import END, START, Flow, flow
from imagedrop_flow_schemas import BatchRequestIn, BatchSummaryOut, FolderFlowIn, FolderSummaryOut


@flow(name="imagedrop_edit_folder", display_name="Edit a folder of images",
      description="Edits every image under a bucket folder with one prompt, writes the results "
                  "to the output folder and answers with counts and any errors.",
      input_schema=FolderFlowIn, output_schema=FolderSummaryOut)
def build_edit_folder(aflow: Flow) -> Flow:
    """batchProcessImages (callback with the folder's summary)."""
    batch = aflow.tool("batchProcessImages", name="edit_folder", input_schema=BatchRequestIn,
                       output_schema=BatchSummaryOut)
    batch.map_input(input_variable="__requestBody__",
                    expression='{"prompt": flow.input.prompt, "bucket": flow.input.bucket, '
                               '"prefix": flow.input.prefix, '
                               '"output_bucket": flow.input.output_bucket, '
                               '"output_prefix": flow.input.output_prefix}')
    aflow.sequence(START, batch, END)
    return aflow
