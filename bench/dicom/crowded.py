"""Headers of many elements: the fuzzing review's private-element file, and synthetic
enhanced multi-frame MR and CT whose per-frame functional groups hold what a scanner writes."""

import struct
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

EXPLICIT_LITTLE = b"1.2.840.10008.1.2.1\0"


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    long = vr in (b"OB", b"OW", b"OF", b"SQ", b"UN", b"UT", b"UC", b"UR")
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if long:
        return head + b"\0\0" + struct.pack("<L", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def private_elements(path: Path, count: int = 600_000, *, patient_id: str = "ABUSE1") -> Path:
    """The review's file: ``count`` private LO elements of two bytes (10 bytes each, 5.7 MiB
    for 600,000), in private blocks of 256 after a CT image's identifying elements."""
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    sop_class = b"1.2.840.10008.5.1.4.1.1.2\0"

    def uid(value: str) -> bytes:
        raw = value.encode()
        return raw + b"\0" * (len(raw) % 2)

    meta = (
        _element(0x00020001, b"OB", b"\0\1")
        + _element(0x00020002, b"UI", sop_class)
        + _element(0x00020003, b"UI", uid(sop))
        + _element(0x00020010, b"UI", EXPLICIT_LITTLE)
    )
    meta = _element(0x00020000, b"UL", struct.pack("<L", len(meta))) + meta
    patient = patient_id.encode() + b" " * (len(patient_id) % 2)
    body = bytearray(
        _element(0x00080016, b"UI", sop_class)
        + _element(0x00080018, b"UI", uid(sop))
        + _element(0x00080060, b"CS", b"CT")
        + _element(0x00100020, b"LO", patient)
        + _element(0x0020000D, b"UI", uid(study))
        + _element(0x0020000E, b"UI", uid(series))
    )
    written, group = 0, 0x0021
    while written < count:
        blocks = min(240, -(-(count - written) // 256))
        for block in range(blocks):
            body += _element(group << 16 | (0x10 + block), b"LO", b"ACME")
        for block in range(blocks):
            for number in range(256):
                if written == count:
                    break
                tag = group << 16 | (0x10 + block) << 8 | number
                body += struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"LO\x02\x00ab"
                written += 1
        group += 2
    path.write_bytes(bytes(128) + b"DICM" + meta + bytes(body))
    return path


def _item(**attributes: object) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _mr_frame(n: int, slices: int) -> Dataset:
    """One frame's functional groups, those a Siemens XA enhanced MR writes per frame
    (PS3.3 C.8.13.5), without the vendor's private groups."""
    sl = n % slices
    frame = Dataset()
    frame.FrameContentSequence = [
        _item(
            FrameAcquisitionNumber=n // slices + 1,
            FrameReferenceDateTime="20260101120000.000000",
            FrameAcquisitionDateTime="20260101120000.000000",
            FrameAcquisitionDuration=2500.0,
            DimensionIndexValues=[1, n // slices + 1, sl + 1],
            TemporalPositionIndex=n // slices + 1,
            StackID="1",
            InStackPositionNumber=sl + 1,
        )
    ]
    frame.PlanePositionSequence = [_item(ImagePositionPatient=[-120.0, -110.5, 3.0 * sl])]
    frame.PlaneOrientationSequence = [_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]
    frame.PixelMeasuresSequence = [
        _item(SliceThickness=3.0, PixelSpacing=[0.9375, 0.9375], SpacingBetweenSlices=3.3)
    ]
    frame.FrameVOILUTSequence = [
        _item(WindowCenter=612, WindowWidth=1277, WindowCenterWidthExplanation="Algo1")
    ]
    frame.PixelValueTransformationSequence = [
        _item(RescaleIntercept=0, RescaleSlope=1, RescaleType="US")
    ]
    frame.MRImageFrameTypeSequence = [
        _item(
            FrameType=["ORIGINAL", "PRIMARY", "M", "NONE"],
            PixelPresentation="MONOCHROME",
            VolumetricProperties="VOLUME",
            VolumeBasedCalculationTechnique="NONE",
            ComplexImageComponent="MAGNITUDE",
            AcquisitionContrast="DIFFUSION",
        )
    ]
    frame.MRTimingAndRelatedParametersSequence = [
        _item(
            RepetitionTime=4800.0,
            FlipAngle=90.0,
            EchoTrainLength=1,
            RFEchoTrainLength=1,
            GradientEchoTrainLength=64,
            GradientOutputType="DB_DT",
            GradientOutput=34.2,
            SpecificAbsorptionRateSequence=[
                _item(
                    SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                    SpecificAbsorptionRateValue=0.9,
                )
            ],
            OperatingModeSequence=[
                _item(OperatingModeType=kind, OperatingMode="IEC_NORMAL")
                for kind in ("STATIC FIELD", "RF", "GRADIENT")
            ],
        )
    ]
    frame.MRFOVGeometrySequence = [
        _item(
            InPlanePhaseEncodingDirection="COLUMN",
            MRAcquisitionFrequencyEncodingSteps=128,
            MRAcquisitionPhaseEncodingStepsInPlane=128,
            PercentSampling=100.0,
            PercentPhaseFieldOfView=100.0,
        )
    ]
    frame.MREchoSequence = [_item(EffectiveEchoTime=72.0)]
    frame.MRModifierSequence = [
        _item(
            InversionRecovery="NO",
            FlowCompensation="NONE",
            Spoiling="NONE",
            T2Preparation="NO",
            SpectrallySelectedExcitation="FAT",
            SpatialPresaturation="NONE",
            PartialFourier="YES",
            ParallelAcquisition="YES",
        )
    ]
    frame.MRImagingModifierSequence = [
        _item(
            MagnetizationTransfer="NONE",
            BloodSignalNulling="NO",
            Tagging="NONE",
            TransmitterFrequency=123.2,
            PixelBandwidth=1502.0,
        )
    ]
    frame.MRReceiveCoilSequence = [
        _item(
            ReceiveCoilName="HeadNeck_64",
            ReceiveCoilManufacturerName="Siemens",
            ReceiveCoilType="MULTICOIL",
            QuadratureReceiveCoil="NO",
        )
    ]
    frame.MRTransmitCoilSequence = [
        _item(
            TransmitCoilName="Body", TransmitCoilManufacturerName="Siemens", TransmitCoilType="BODY"
        )
    ]
    frame.MRAveragesSequence = [_item(NumberOfAverages=1.0)]
    frame.MRDiffusionSequence = [
        _item(DiffusionBValue=float(1000 * (n // slices % 2)), DiffusionDirectionality="ISOTROPIC")
    ]
    return frame


def _ct_frame(n: int) -> Dataset:
    """One frame's functional groups of an enhanced CT (PS3.3 C.8.15.3)."""
    frame = Dataset()
    frame.FrameContentSequence = [
        _item(
            FrameAcquisitionNumber=1,
            FrameReferenceDateTime="20260101120000.000000",
            FrameAcquisitionDateTime="20260101120000.000000",
            FrameAcquisitionDuration=500.0,
            DimensionIndexValues=[1, n + 1],
            InStackPositionNumber=n + 1,
            StackID="1",
        )
    ]
    frame.PlanePositionSequence = [_item(ImagePositionPatient=[-250.0, -250.0, round(-0.6 * n, 1)])]
    frame.CTImageFrameTypeSequence = [
        _item(
            FrameType=["ORIGINAL", "PRIMARY", "AXIAL", "NONE"],
            PixelPresentation="MONOCHROME",
            VolumetricProperties="VOLUME",
            VolumeBasedCalculationTechnique="NONE",
        )
    ]
    frame.CTPositionSequence = [
        _item(
            TablePosition=round(-0.6 * n, 1),
            ReconstructionTargetCenterPatient=[0.0, -20.0, round(-0.6 * n, 1)],
        )
    ]
    frame.CTExposureSequence = [
        _item(
            ExposureTimeInms=500.0,
            XRayTubeCurrentInmA=210.0,
            ExposureInmAs=105.0,
            CTDIvol=8.4,
            ExposureModulationType="XYZ_EC",
        )
    ]
    frame.FrameVOILUTSequence = [_item(WindowCenter=40, WindowWidth=400)]
    frame.IrradiationEventIdentificationSequence = [
        _item(IrradiationEventUID=generate_uid(prefix="1.2.826.0.1.3680043.8.498."))
    ]
    return frame


def enhanced(path: Path, *, modality: str, frames: int, patient_id: str = "ENH1") -> Path:
    """An enhanced MR (``frames`` frames, 30 slices a volume) or CT header: per-frame
    functional groups, a header only (a one-byte-per-frame Pixel Data stands for the
    images, which no count or encoding reads)."""
    ds = Dataset()
    ds.SOPClassUID = (
        "1.2.840.10008.5.1.4.1.1.4.1" if modality == "MR" else "1.2.840.10008.5.1.4.1.1.2.1"
    )
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = modality, patient_id, "Enhanced^Test"
    ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20260101", 1, 1
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames, 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SharedFunctionalGroupsSequence = [Dataset()]
    make = (lambda n: _mr_frame(n, 30)) if modality == "MR" else _ct_frame
    ds.PerFrameFunctionalGroupsSequence = Sequence(make(n) for n in range(frames))
    ds.PixelData = bytes(frames + frames % 2)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def count_elements(path: Path) -> int:
    """Elements and sequence items as pydicom reads them, file meta included: the count
    DICOM_MAX_HEADER_ELEMENTS bounds."""
    from pydicom import dcmread

    def count(ds: Dataset) -> int:
        total = 0
        for elem in ds:
            total += 1
            if elem.VR == "SQ":
                total += sum(1 + count(item) for item in elem.value)
        return total

    ds = dcmread(path)
    return len(ds.file_meta) + count(ds)
