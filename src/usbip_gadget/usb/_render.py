"""A text tree of a device snapshot, laid out like ``lsusb -v``."""

from __future__ import annotations

from usbip_gadget._errors import DescriptorError
from usbip_gadget.usb._bos import Bos, DeviceCapability, DeviceCapabilityType
from usbip_gadget.usb._common import hex_bytes
from usbip_gadget.usb._config import (
    Configuration,
    EndpointDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
)
from usbip_gadget.usb._device import DeviceDescriptor, DeviceQualifier
from usbip_gadget.usb._enums import ClassCode, DescriptorType, Speed, TransferType
from usbip_gadget.usb._hid import HidDescriptor
from usbip_gadget.usb._raw import RawDescriptor
from usbip_gadget.usb._snapshot import DeviceSnapshot

# Named as lsusb names them; a code missing here is printed without a name.
_CLASS_NAMES: dict[int, str] = {
    ClassCode.PER_INTERFACE: "(Defined at Interface level)",
    ClassCode.AUDIO: "Audio",
    ClassCode.CDC: "Communications",
    ClassCode.HID: "Human Interface Device",
    ClassCode.PHYSICAL: "Physical Interface Device",
    ClassCode.IMAGE: "Imaging",
    ClassCode.PRINTER: "Printer",
    ClassCode.MASS_STORAGE: "Mass Storage",
    ClassCode.HUB: "Hub",
    ClassCode.CDC_DATA: "CDC Data",
    ClassCode.SMART_CARD: "Chip/SmartCard",
    ClassCode.CONTENT_SECURITY: "Content Security",
    ClassCode.VIDEO: "Video",
    ClassCode.PERSONAL_HEALTHCARE: "Personal Healthcare",
    ClassCode.AUDIO_VIDEO: "Audio/Video",
    ClassCode.BILLBOARD: "Billboard",
    ClassCode.DIAGNOSTIC: "Diagnostic",
    ClassCode.WIRELESS: "Wireless",
    ClassCode.MISC: "Miscellaneous Device",
    ClassCode.APPLICATION: "Application Specific Interface",
    ClassCode.VENDOR: "Vendor Specific Class",
}
_SYNC_TYPES = ("None", "Asynchronous", "Adaptive", "Synchronous")
_USAGE_TYPES = ("Data", "Feedback", "Implicit feedback Data", "(reserved)")
_VALUE_COLUMN = 25  # lsusb right-aligns "name value" pairs in 25 columns


def class_name(code: int) -> str:
    """The usual name of a USB class code, or "" if it is not a well-known one."""
    return _CLASS_NAMES.get(code, "")


def describe_endpoint(ep: EndpointDescriptor) -> str:
    """A one-line summary such as "EP 1 IN Bulk 512 bytes"."""
    direction = "IN" if ep.is_in else "OUT"
    kind = ep.transfer_type.name.capitalize()
    return f"EP {ep.number} {direction} {kind} {ep.max_packet_size} bytes"


def _line(indent: int, name: str, value: object, text: str = "") -> str:
    width = max(_VALUE_COLUMN - len(name), len(str(value)) + 1)
    return f"{' ' * indent}{name}{value!s:>{width}} {text}".rstrip()


def _bcd(value: int) -> str:
    return f"{value >> 8:2x}.{value & 0xFF:02x}"


def _string(snapshot: DeviceSnapshot, indent: int, name: str, index: int) -> str:
    return _line(indent, name, index, snapshot.string(index) or "")


def _header(indent: int, length: int, dtype: int) -> list[str]:
    return [_line(indent, "bLength", length), _line(indent, "bDescriptorType", dtype)]


def _device(snapshot: DeviceSnapshot, dev: DeviceDescriptor) -> list[str]:
    return [
        "Device Descriptor:",
        *_header(2, DeviceDescriptor.SIZE, DescriptorType.DEVICE),
        _line(2, "bcdUSB", _bcd(dev.bcd_usb)),
        _line(2, "bDeviceClass", dev.b_device_class, class_name(dev.b_device_class)),
        _line(2, "bDeviceSubClass", dev.b_device_sub_class),
        _line(2, "bDeviceProtocol", dev.b_device_protocol),
        _line(2, "bMaxPacketSize0", dev.b_max_packet_size0),
        _line(2, "idVendor", f"0x{dev.id_vendor:04x}"),
        _line(2, "idProduct", f"0x{dev.id_product:04x}"),
        _line(2, "bcdDevice", _bcd(dev.bcd_device)),
        _string(snapshot, 2, "iManufacturer", dev.i_manufacturer),
        _string(snapshot, 2, "iProduct", dev.i_product),
        _string(snapshot, 2, "iSerial", dev.i_serial_number),
        _line(2, "bNumConfigurations", dev.b_num_configurations),
    ]


def _power_lines(config: Configuration, speed: Speed) -> list[str]:
    attributes = config.bm_attributes
    notes = ["Self Powered" if attributes & 0x40 else "Bus Powered"]
    if attributes & 0x20:
        notes.append("Remote Wakeup")
    unit = 8 if speed >= Speed.SUPER else 2
    return [
        _line(4, "bmAttributes", f"0x{attributes:02x}"),
        *(f"      ({note})" for note in notes),
        _line(4, "MaxPower", config.b_max_power * unit) + "mA",
    ]


def _configuration(snapshot: DeviceSnapshot, config: Configuration, raw: bytes) -> list[str]:
    lines = [
        "  Configuration Descriptor:",
        *_header(4, raw[0], raw[1]),
        _line(4, "wTotalLength", f"0x{int.from_bytes(raw[2:4], 'little'):04x}"),
        _line(4, "bNumInterfaces", raw[4]),
        _line(4, "bConfigurationValue", config.b_configuration_value),
        _string(snapshot, 4, "iConfiguration", config.i_configuration),
        *_power_lines(config, snapshot.speed),
        *_raw_lines(config.extra, 4),
    ]
    for item in config.body:
        if isinstance(item, InterfaceAssociation):
            lines += _association(snapshot, item)
        else:
            lines += _interface(snapshot, config, item)
    return lines


def _association(snapshot: DeviceSnapshot, iad: InterfaceAssociation) -> list[str]:
    return [
        "    Interface Association:",
        *_header(6, InterfaceAssociation.LAYOUT.size, DescriptorType.INTERFACE_ASSOCIATION),
        _line(6, "bFirstInterface", iad.b_first_interface),
        _line(6, "bInterfaceCount", iad.b_interface_count),
        _line(6, "bFunctionClass", iad.b_function_class, class_name(iad.b_function_class)),
        _line(6, "bFunctionSubClass", iad.b_function_sub_class),
        _line(6, "bFunctionProtocol", iad.b_function_protocol),
        _string(snapshot, 6, "iFunction", iad.i_function),
        *_raw_lines(iad.extra, 6),
    ]


def _interface(
    snapshot: DeviceSnapshot, config: Configuration, alt: InterfaceDescriptor
) -> list[str]:
    lines = [
        "    Interface Descriptor:",
        *_header(6, InterfaceDescriptor.LAYOUT.size, DescriptorType.INTERFACE),
        _line(6, "bInterfaceNumber", alt.b_interface_number),
        _line(6, "bAlternateSetting", alt.b_alternate_setting),
        _line(6, "bNumEndpoints", alt.b_num_endpoints),
        _line(6, "bInterfaceClass", alt.b_interface_class, class_name(alt.b_interface_class)),
        _line(6, "bInterfaceSubClass", alt.b_interface_sub_class),
        _line(6, "bInterfaceProtocol", alt.b_interface_protocol),
        _string(snapshot, 6, "iInterface", alt.i_interface),
    ]
    report = snapshot.hid_reports.get((config.b_configuration_value, alt.b_interface_number))
    lines += _extra_lines(alt, alt.extra, report)
    for ep in alt.endpoints:
        lines += _endpoint(ep) + _extra_lines(alt, ep.extra, report, indent=8)
    return lines


def _endpoint(ep: EndpointDescriptor) -> list[str]:
    attributes = ep.bm_attributes
    lines = [
        "      Endpoint Descriptor:",
        *_header(8, ep.b_length, DescriptorType.ENDPOINT),
        _line(8, "bEndpointAddress", f"0x{ep.b_endpoint_address:02x}", describe_endpoint(ep)),
        _line(8, "bmAttributes", attributes),
        f"          {'Transfer Type':<25}{_transfer_name(ep.transfer_type)}",
        f"          {'Synch Type':<25}{_SYNC_TYPES[(attributes >> 2) & 3]}",
        f"          {'Usage Type':<25}{_USAGE_TYPES[(attributes >> 4) & 3]}",
        _line(8, "wMaxPacketSize", f"0x{ep.w_max_packet_size:04x}", _packet_text(ep)),
        _line(8, "bInterval", ep.b_interval),
    ]
    if ep.b_refresh is not None:
        lines += [_line(8, "bRefresh", ep.b_refresh)]
        lines += [_line(8, "bSynchAddress", ep.b_synch_address)]
    return lines


def _transfer_name(kind: TransferType) -> str:
    return kind.name.capitalize()


def _packet_text(ep: EndpointDescriptor) -> str:
    return f"{ep.packets_per_microframe}x {ep.max_packet_size} bytes"


def _extra_lines(
    alt: InterfaceDescriptor,
    extra: tuple[RawDescriptor, ...],
    report: bytes | None,
    *,
    indent: int = 6,
) -> list[str]:
    """The descriptors following an interface or endpoint; HID ones decoded, others as hex."""
    lines: list[str] = []
    for raw in extra:
        hid = _as_hid(alt, raw)
        lines += _raw_lines((raw,), indent) if hid is None else _hid(hid, report, indent)
    return lines


def _as_hid(alt: InterfaceDescriptor, raw: RawDescriptor) -> HidDescriptor | None:
    if alt.b_interface_class != ClassCode.HID or raw.b_descriptor_type != DescriptorType.HID:
        return None
    try:
        return HidDescriptor.parse(raw.pack())
    except DescriptorError:
        return None


def _hid(hid: HidDescriptor, report: bytes | None, indent: int) -> list[str]:
    inner = indent + 2
    lines = [
        f"{' ' * indent}HID Device Descriptor:",
        *_header(inner, len(hid.pack()), DescriptorType.HID),
        _line(inner, "bcdHID", _bcd(hid.bcd_hid)),
        _line(inner, "bCountryCode", hid.b_country_code),
        _line(inner, "bNumDescriptors", len(hid.descriptors)),
    ]
    for dtype, length in hid.descriptors:
        name = "Report" if dtype == DescriptorType.HID_REPORT else ""
        lines += [_line(inner, "bDescriptorType", dtype, name)]
        lines += [_line(inner, "wDescriptorLength", length)]
    shown = "** UNAVAILABLE **" if report is None else f"(length is {len(report)})"
    return [*lines, f"{' ' * inner}Report Descriptor: {shown}"]


def _type_name(dtype: int) -> str:
    try:
        return DescriptorType(dtype).name
    except ValueError:
        return "unknown"


def _raw_lines(extra: tuple[RawDescriptor, ...], indent: int) -> list[str]:
    lines: list[str] = []
    for raw in extra:
        dtype = raw.b_descriptor_type
        lines.append(f"{' ' * indent}Descriptor 0x{dtype:02x} ({_type_name(dtype)}):")
        lines.append(f"{' ' * (indent + 2)}{hex_bytes(raw.pack())}")
    return lines


def _capability(capability: DeviceCapability) -> list[str]:
    kind = capability.b_dev_capability_type
    try:
        name = DeviceCapabilityType(kind).name
    except ValueError:
        name = "unknown"
    return [
        f"  Device Capability 0x{kind:02x} ({name}):",
        *_header(4, len(capability.data) + 3, DescriptorType.DEVICE_CAPABILITY),
        _line(4, "bDevCapabilityType", kind),
        f"    {hex_bytes(capability.data)}".rstrip(),
    ]


def _bos(raw: bytes, bos: Bos) -> list[str]:
    lines = [
        "Binary Object Store Descriptor:",
        *_header(2, raw[0], raw[1]),
        _line(2, "wTotalLength", f"0x{int.from_bytes(raw[2:4], 'little'):04x}"),
        _line(2, "bNumDeviceCaps", raw[4]),
    ]
    for capability in bos.capabilities:
        lines += _capability(capability)
    return lines


def _qualifier(qualifier: DeviceQualifier) -> list[str]:
    return [
        "Device Qualifier (for other device speed):",
        *_header(2, DeviceQualifier.SIZE, DescriptorType.DEVICE_QUALIFIER),
        _line(2, "bcdUSB", _bcd(qualifier.bcd_usb)),
        _line(2, "bDeviceClass", qualifier.b_device_class, class_name(qualifier.b_device_class)),
        _line(2, "bDeviceSubClass", qualifier.b_device_sub_class),
        _line(2, "bDeviceProtocol", qualifier.b_device_protocol),
        _line(2, "bMaxPacketSize0", qualifier.b_max_packet_size0),
        _line(2, "bNumConfigurations", qualifier.b_num_configurations),
    ]


def render_tree(snapshot: DeviceSnapshot) -> str:
    """The snapshot as an ``lsusb -v``-like text tree (ends with a newline)."""
    dev = snapshot.device
    speed = snapshot.speed
    lines = [
        f"Bus ID {snapshot.busid}: ID {dev.id_vendor:04x}:{dev.id_product:04x} ({speed.label})"
    ]
    lines += _device(snapshot, dev)
    for config, raw in zip(snapshot.configurations, snapshot.configurations_raw, strict=True):
        lines += _configuration(snapshot, config, raw)
    bos = snapshot.bos()
    if bos is not None and snapshot.bos_raw is not None:
        lines += _bos(snapshot.bos_raw, bos)
    qualifier = snapshot.device_qualifier()
    if qualifier is not None:
        lines += _qualifier(qualifier)
    return "\n".join(lines) + "\n"
